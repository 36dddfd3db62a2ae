//! Embeds deployer in a Rust program: registers `myapp::version()`, runs a pipeline script
//! that uses it, and prints the outcome. Uses only what the `deployer` library exports.
//!
//!     cargo run --example embed
//!
//! The run is recorded under `.deployer/` of a fresh temporary folder, not of the project.

use deployer::rhai::{Module, NativeCallContext};
use deployer::{Deployer, Event};

const SCRIPT: &str = r#"
phase("Build", || {
    check("version is set", || myapp::version() != "");
    log::info("building myapp " + myapp::version());
});
phase("Verify", || {
    check("version is semver", || myapp::version().split(".").len() == 3);
});
"#;

fn main() -> std::process::ExitCode {
    let dir = std::env::temp_dir().join(format!("deployer-embed-example-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::env::set_current_dir(&dir)) {
        eprintln!("cannot use {} as the working folder: {e}", dir.display());
        return std::process::ExitCode::from(2);
    }

    let mut myapp = Module::new();
    myapp.set_native_fn("version", |_: NativeCallContext| Ok("1.4.2".to_string()));

    let deployer = Deployer::builder()
        .module("myapp", myapp)
        .on_event(|event| {
            if let Event::PhaseEnded { record, .. } = event {
                println!("event: phase {} ended {:?}", record.name, record.status);
            }
        })
        .build();

    let code = match deployer.run_script("deploy.rhai", SCRIPT) {
        Ok(outcome) => {
            let verdict = outcome.verdict.map(|v| v.as_str()).unwrap_or("not judged");
            println!(
                "outcome: {verdict}, score {:.0}, {} phases, exit code {}",
                outcome.score.unwrap_or(0.0),
                outcome.phases.len(),
                outcome.exit_code
            );
            outcome.exit_code
        }
        Err(e) => {
            eprintln!("not run: {e}");
            e.code()
        }
    };
    let _ = std::env::set_current_dir(std::env::temp_dir());
    let _ = std::fs::remove_dir_all(&dir);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
