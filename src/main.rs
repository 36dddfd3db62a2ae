/// Counts allocated bytes so a script that builds huge values stops with an error
/// instead of aborting the process.
#[global_allocator]
static ALLOC: deployer::CountingAlloc = deployer::CountingAlloc;

fn main() {
    std::process::exit(deployer::cli_main());
}
