/// Counts allocated bytes so a script that builds huge values stops with an error
/// (`deployer::host::memory`) instead of aborting the process.
#[global_allocator]
static ALLOC: deployer::host::memory::CountingAlloc = deployer::host::memory::CountingAlloc;

fn main() {
    std::process::exit(deployer::cli::main());
}
