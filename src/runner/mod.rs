//! A whole deployment run: configuration and environment, the lock, confirmation, the
//! script, the score and verdict, the automatic rollback, hooks, and the run record.
//!
//! This file starts the run and drives the script and the rollback; how it ends is in
//! `finish.rs` (outcome, hook, record), `decide.rs` (the verdict and exit code, pure) and
//! `end.rs` (what the console shows at the end).

mod decide;
mod end;
mod finish;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rhai::{Dynamic, Map, AST};

use crate::api::error::{control_of, is_script_bug, is_terminated, message_of};
use crate::config::{self, Config, EnvConfig, RollbackPolicy};
use crate::core::duration::format_duration;
use crate::core::score::Verdict;
use crate::exit;
use crate::host::console::Console;
use crate::host::diagnostic::Diagnostic;
use crate::host::present;
use crate::host::slot::ScriptSlot;
use crate::host::state::HostOptions;
use crate::host::Host;
use crate::pipeline::{PhaseStatus, RollbackRequest};
use crate::report::record::{Report, RollbackRecord, RollbackStatus};
use crate::store::history;
use crate::store::ids;
use crate::store::lock::{self, LockError, LockInfo};
use crate::sys::cancel::CancelReason;

/// How long `fn rollback(ctx)` may run unless `--rollback-timeout` or
/// `DEPLOYER_ROLLBACK_TIMEOUT` says otherwise.
pub const DEFAULT_ROLLBACK_TIMEOUT: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub script: PathBuf,
    pub env: Option<String>,
    pub vars: Vec<(String, String)>,
    pub dry_run: bool,
    pub yes: bool,
    pub timeout: Option<Duration>,
    /// The bound of `fn rollback(ctx)` (`--rollback-timeout`); `None`: the default.
    pub rollback_timeout: Option<Duration>,
    pub skip: Vec<String>,
    pub skip_e2e: bool,
    pub strict: bool,
    pub json: bool,
    /// `--junit PATH`: also write the report as JUnit XML there.
    pub junit: Option<PathBuf>,
    /// `--html PATH`: where to write a copy of the run's `report.html`.
    pub html: Option<PathBuf>,
    pub lock_wait: Option<Duration>,
    /// Run only the script's `fn rollback(ctx)` (`deployer rollback`).
    pub rollback_only: bool,
    /// Where the hooks look their functions up. The run puts its script there unless a
    /// newer one is there already; watch mode shares one slot across runs and puts each new
    /// version that passes the checks in it, so edits reach a running monitor's hooks.
    pub script_slot: ScriptSlot,
    /// The script's text when it does not come from `script` (an embedder's text; `script`
    /// still names it and places it for deployer.toml).
    pub text: Option<String>,
    /// What an embedding program adds: its own functions, an event listener.
    pub embedding: Embedding,
    /// Run inside an embedding program: its other child processes are not the run's, so
    /// the run neither becomes their subreaper nor stops them at the end.
    pub embedded: bool,
}

/// Registers an embedder's own functions and modules on the engine.
pub type RegisterFn = Arc<dyn Fn(&mut rhai::Engine) + Send + Sync>;
/// Receives each pipeline event of a run.
pub type EventFn = Arc<dyn Fn(&crate::pipeline::Event) + Send + Sync>;

/// What an embedding program adds to a run.
#[derive(Clone, Default)]
pub struct Embedding {
    /// Registrations after the script API's, in order.
    pub register: Vec<RegisterFn>,
    /// Called with each pipeline event as the recorder applies it.
    pub on_event: Option<EventFn>,
}

impl std::fmt::Debug for Embedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedding")
            .field("register", &self.register.len())
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

/// How a run ended: its exit code, and its report when it got as far as one.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub report: Option<Report>,
}

/// Returns why `--html PATH` cannot be written, found before anything runs: its folder
/// is missing or is not a folder, or PATH is a folder.
fn html_path_problem(path: Option<&std::path::Path>) -> Option<String> {
    let path = path?;
    if path.is_dir() {
        return Some(format!(
            "--html {} is a folder: give a file name, such as {}",
            path.display(),
            path.join("report.html").display()
        ));
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    (!parent.is_dir()).then(|| {
        format!(
            "--html {}: the folder {} does not exist; create it or write the report elsewhere",
            path.display(),
            parent.display()
        )
    })
}

/// Runs a script as a deployment and returns the exit code. Every run that gets past the
/// static checks leaves a record, including failed, declined and interrupted ones.
pub fn execute(req: &RunRequest, console: Console) -> i32 {
    run(req, console).code
}

/// Runs a script as a deployment (see [`execute`]) and returns its exit code with its
/// report, if it got as far as one.
pub fn run(req: &RunRequest, console: Console) -> Ran {
    let report = Mutex::new(None);
    let code = execute_into(req, console, &report);
    Ran {
        code,
        report: report.into_inner().unwrap_or_else(|e| e.into_inner()),
    }
}

fn execute_into(req: &RunRequest, console: Console, report_out: &Mutex<Option<Report>>) -> i32 {
    let name = req.script.display().to_string();
    let read = match &req.text {
        Some(text) => Ok(text.clone()),
        None => crate::host::input::read_script(&req.script),
    };
    let text = match read {
        Ok(t) => t,
        Err(e) => {
            console.error(&format!("cannot read script {name}: {e}; nothing was run"));
            return exit::USAGE;
        }
    };
    if let Some(e) = html_path_problem(req.html.as_deref()) {
        console.error(&format!("{e}; nothing was run"));
        return exit::USAGE;
    }
    let config = match config::for_script(&req.script) {
        Ok(c) => c,
        Err(e) => {
            console.error(&format!("{e}; nothing was run"));
            return exit::USAGE;
        }
    };
    crate::api::fs::protect_project(&req.script);
    let env = match config.select(req.env.as_deref()) {
        Ok(selected) => {
            if let Some(w) = &selected.warning {
                console.warn(w);
            }
            selected.env
        }
        Err(e) => {
            console.error(&format!("{e}; nothing was run"));
            return exit::USAGE;
        }
    };
    // --var over [env.E.scripts.S] over [env.E.vars] over [scripts.S] over [vars].
    let mut vars = config.vars_for(&req.script, &env);
    vars.extend(req.vars.iter().cloned());
    let options = HostOptions {
        env: env.name.clone(),
        vars,
        dry_run: req.dry_run,
        yes: req.yes,
        state_dir: Some(config.state_dir.clone()),
        owns_process: !req.embedded,
    };
    let register = |engine: &mut rhai::Engine| {
        crate::api::register_all(engine);
        for f in &req.embedding.register {
            f(engine);
        }
    };
    let bindings = crate::host::Bindings {
        register: &register,
        ..crate::api::bindings()
    };
    let host = match Host::new(options, console.clone(), bindings, req.script_slot.clone()) {
        Ok(h) => h,
        Err(e) => {
            console.error(&e.to_string());
            return exit::FAILED;
        }
    };
    match crate::remote::Inventory::from_env(&env) {
        Ok(inventory) => host.state.remote.configure(
            inventory.relative_to(config.path.as_deref().and_then(std::path::Path::parent)),
        ),
        Err(e) => {
            console.error(&format!("deployer.toml: {e}; nothing was run"));
            return exit::USAGE;
        }
    }
    let checked = match host.check(&name, &text) {
        Ok(c) => c,
        Err(diags) => {
            for d in &diags {
                host.print(d);
            }
            console.error(&format!(
                "{} problem{} in {name}; nothing was run",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            ));
            return exit::USAGE;
        }
    };
    for w in &checked.warnings {
        host.print(w);
    }
    let (unread, maybe_read) = checked
        .vars
        .check_given(req.vars.iter().map(|(k, _)| k.as_str()));
    for w in &maybe_read {
        host.print(w);
    }
    if !unread.is_empty() {
        for d in &unread {
            host.print(d);
        }
        console.error(&format!(
            "{} --var not read by {name}; nothing was run",
            unread.len()
        ));
        return exit::USAGE;
    }
    if let Err(msg) = check_skips(req, &checked.phases) {
        console.error(&format!("{msg}; nothing was run"));
        return exit::USAGE;
    }
    if req.rollback_only && !Host::defines(&checked.ast, "rollback", 1) {
        console.error(&format!(
            "{name} defines no fn rollback(ctx); nothing was run"
        ));
        return exit::USAGE;
    }
    if let Some(on_event) = req.embedding.on_event.clone() {
        host.state.pipeline.listen(Box::new(move |e| on_event(e)));
    }
    let run = Run {
        report_out,
        req,
        name,
        text,
        config,
        env,
        host,
        ast: checked.ast,
        started: Instant::now(),
        started_at: SystemTime::now(),
    };
    let marks_changes = checked.phases.iter().any(|p| p.changes != Some(false));
    if Host::defines(&run.ast, "rollback", 1) && !checked.phases.is_empty() && !marks_changes {
        run.host.state.console.warn(&format!(
            "{} defines fn rollback(ctx) but no phase is marked `changes: true`: a failed required phase will not roll back automatically",
            run.name
        ));
    }
    run.host.state.pipeline.plan(crate::pipeline::Plan {
        planned: checked.phases,
        skip: req.skip.clone(),
        skip_e2e: req.skip_e2e,
        thresholds: run.config.thresholds,
    });
    run.go()
}

/// `--skip` must name a phase the script has, and never a required one.
fn check_skips(req: &RunRequest, planned: &[crate::pipeline::PlannedPhase]) -> Result<(), String> {
    for s in &req.skip {
        match planned.iter().find(|p| p.name.eq_ignore_ascii_case(s)) {
            Some(p) if p.required == Some(true) => {
                return Err(format!(
                    "--skip \"{s}\": phase \"{}\" is required and cannot be skipped",
                    p.name
                ))
            }
            Some(_) => {}
            None if planned.is_empty() => {}
            None => {
                let names: Vec<&str> = planned.iter().map(|p| p.name.as_str()).collect();
                return Err(format!(
                    "--skip \"{s}\": the script has no phase of that name; its phases are: {}",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(())
}

struct Run<'a> {
    /// Where the finished report goes for [`run`]'s caller.
    report_out: &'a Mutex<Option<Report>>,
    req: &'a RunRequest,
    name: String,
    text: String,
    config: Config,
    env: EnvConfig,
    host: Host,
    ast: AST,
    started: Instant,
    started_at: SystemTime,
}

/// How the script part of a run ended.
enum Ended {
    Completed,
    Declined(String),
    Interrupted(Diagnostic),
    Failed(Option<Diagnostic>),
}

impl Run<'_> {
    fn console(&self) -> &Console {
        &self.host.state.console
    }

    fn go(self) -> i32 {
        self.host.install_signal_handlers();
        let run_id = ids::run_id(self.started_at, &self.env.name);
        let console = self.console().clone();
        // Screenshots go straight into the run's record folder.
        self.host.state.browser.set_dir(
            self.config
                .state_dir
                .join("runs")
                .join(&run_id)
                .join("screenshots"),
        );
        // Dry runs change nothing, so they do not take the lock.
        let _guard = if self.req.dry_run {
            None
        } else {
            match self.lock(&run_id) {
                Ok(g) => Some(g),
                Err(code) => return code,
            }
        };
        // The hosts' lock, renewed while the run lives (a dry run only reads it).
        let remote_lock = match self.remote_lock(&run_id) {
            Ok(l) => l,
            Err(code) => return code,
        };
        if let Some(limit) = self.req.timeout {
            self.host.start_timeout(limit);
        }
        let what = if self.req.rollback_only {
            "rollback"
        } else {
            "deploy"
        };
        console.info(&format!(
            "deployer: {what} {} to {} (run {run_id}){}",
            self.name,
            self.env.name,
            if self.req.dry_run {
                "; dry run: no command will run and no mutating request will be sent"
            } else {
                ""
            }
        ));

        let (ended, rollback) = if self.req.rollback_only {
            self.manual_rollback()
        } else {
            self.deploy()
        };
        // After the rollback, before the masters close.
        drop(remote_lock);
        self.host.stop_processes();
        self.finish(run_id, ended, rollback)
    }

    fn lock(&self, run_id: &str) -> Result<lock::LockGuard, i32> {
        let dir = self.config.state_dir.join("lock");
        let info = LockInfo::for_this_process(&self.name, run_id);
        let cancel = self.host.state.cancel.clone();
        let result = match self.req.lock_wait {
            Some(wait) => {
                lock::acquire_wait(&dir, &self.env.name, &info, wait, &|| cancel.is_cancelled())
            }
            None => lock::acquire(&dir, &self.env.name, &info),
        };
        match result {
            Ok(guard) => {
                if let Some(old) = guard.stale_takeover() {
                    self.console().warn(&format!(
                        "took over a stale lock of {}: pid {} on {} (started {}) is no longer running",
                        self.env.name, old.pid, old.host, old.started_at
                    ));
                }
                if let Some(age) = guard.damaged_takeover() {
                    self.console().warn(&format!(
                        "took over a stale lock of {}: the lock file {} could not be read (damaged, last written {:.0}s ago)",
                        self.env.name,
                        guard.path().display(),
                        age.as_secs_f64()
                    ));
                }
                Ok(guard)
            }
            Err(LockError::Cancelled { .. }) => {
                self.console()
                    .error("interrupted while waiting for the lock; nothing was run");
                Err(exit::INTERRUPTED)
            }
            Err(
                e @ (LockError::Held { .. }
                | LockError::Unreadable { .. }
                | LockError::Contended { .. }),
            ) => {
                self.console().error(&format!("{e}; nothing was run"));
                Err(exit::LOCKED)
            }
            Err(e) => {
                self.console().error(&format!("{e}; nothing was run"));
                Err(exit::USAGE)
            }
        }
    }

    fn remote_lock(&self, run_id: &str) -> Result<Option<crate::remote::lock::RemoteLock>, i32> {
        let console = self.console().clone();
        let cancel = self.host.state.cancel.clone();
        crate::remote::lock::for_run(
            &self.host.state.remote,
            &self.env,
            &LockInfo::for_this_process(&self.name, run_id),
            self.req.dry_run,
            self.req.lock_wait,
            &|| cancel.is_cancelled(),
            std::sync::Arc::new(move |m: &str| console.warn(m)),
        )
        .map_err(|e| {
            self.console().error(&format!("{e}; nothing was run"));
            e.exit_code()
        })
    }

    fn deploy(&self) -> (Ended, RollbackRecord) {
        if self.env.confirm && !self.req.dry_run {
            let q = format!("Deploy {} to {}?", self.name, self.env.name.to_uppercase());
            match self.host.state.confirm(&q) {
                Ok(true) => {}
                Ok(false) => {
                    return (
                        Ended::Declined(format!(
                            "not deployed: environment {} asks for confirmation (confirm = true) and it was not given; use --yes to confirm without a terminal",
                            self.env.name
                        )),
                        RollbackRecord::not_needed(),
                    )
                }
                Err(_) => {
                    return (
                        Ended::Interrupted(Diagnostic::error("interrupted at the confirmation", None)),
                        RollbackRecord::not_needed(),
                    )
                }
            }
        }
        let result = self.host.run(&self.ast);
        let ended = match &result {
            Ok(_) => Ended::Completed,
            Err(e) if is_terminated(e) => {
                // No reason: the engine stopped the script itself (the memory bound).
                let timed_out = matches!(
                    self.host.state.cancel.reason(),
                    Some(CancelReason::Timeout(_)) | None
                );
                let d = self.host.diagnose(e, &self.name);
                if timed_out {
                    self.host.print(&d);
                    Ended::Failed(Some(d))
                } else {
                    Ended::Interrupted(d)
                }
            }
            Err(e) => {
                if control_of(e).is_some() {
                    Ended::Failed(None)
                } else if self.req.dry_run && !is_script_bug(e) {
                    // A probe of the unchanged service failed outside any phase: the plan
                    // stops here, but the script is not broken.
                    let d = self.host.diagnose(e, &self.name);
                    let at = d
                        .location
                        .as_ref()
                        .map(|l| format!(" at {l}"))
                        .unwrap_or_default();
                    self.console().warn(&format!(
                        "the dry run stopped{at}: would fail: {}",
                        d.message
                    ));
                    Ended::Completed
                } else {
                    let d = self.host.diagnose(e, &self.name);
                    self.host.print(&d);
                    Ended::Failed(Some(d))
                }
            }
        };
        let rollback = match &ended {
            // A dry run never rolls back: its end says where fn rollback is.
            _ if self.req.dry_run => RollbackRecord::not_needed(),
            Ended::Completed | Ended::Failed(_) => self.maybe_rollback(&ended),
            Ended::Interrupted(_) if self.env.rollback_on_interrupt => self.rollback_on_interrupt(),
            _ => RollbackRecord::not_needed(),
        };
        (ended, rollback)
    }

    /// Decides whether the run calls for a rollback, and runs it according to policy.
    fn maybe_rollback(&self, ended: &Ended) -> RollbackRecord {
        let request = {
            let p = self.host.state.pipeline.close();
            let failed = matches!(ended, Ended::Failed(_));
            let (_, verdict) = p.total(&self.config.thresholds);
            // Asked for by the script (`trigger_rollback`, a monitor at critical), a rollback
            // runs even before a `changes: true` phase; otherwise only once changes began.
            p.rollback_request.clone().or_else(|| {
                if !p.changes_began {
                    return None;
                }
                let failed_phase = p
                    .phases
                    .iter()
                    .find(|ph| ph.status == PhaseStatus::Failed)
                    .map(|ph| ph.name.clone());
                if failed {
                    Some(RollbackRequest {
                        reason: match &p.stopped_by {
                            Some(s) => format!("required phase \"{s}\" failed"),
                            None => "the deployment script failed".into(),
                        },
                        phase: p.stopped_by.clone().or(failed_phase),
                    })
                } else if p.has_phases() && verdict == Verdict::Failed {
                    Some(RollbackRequest {
                        reason: "the deployment score is below the fail threshold".into(),
                        phase: failed_phase,
                    })
                } else {
                    None
                }
            })
        };
        match request {
            Some(request) => self.run_rollback(&request),
            None => RollbackRecord::not_needed(),
        }
    }

    /// `on_interrupt = "rollback"`: an interrupted run that had begun changes rolls back
    /// (a second signal still ends it at once).
    fn rollback_on_interrupt(&self) -> RollbackRecord {
        let changed = self.host.state.pipeline.read(|p| p.changes_began);
        if !changed || self.host.state.cancel.hurried() {
            return RollbackRecord::not_needed();
        }
        let signal = self
            .host
            .state
            .cancel
            .reason()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "interrupted".into());
        self.console().warn(&format!(
            "{signal} after changes began: rolling back because environment {} has on_interrupt = \"rollback\" (a second signal stops the rollback)",
            self.env.name
        ));
        self.host.state.cancel.reset();
        let request = RollbackRequest {
            reason: format!("the run was interrupted ({signal}) after changes began"),
            phase: self
                .host
                .state
                .pipeline
                .read(|p| p.phases.last().map(|r| r.name.clone())),
        };
        self.run_rollback(&request)
    }

    /// Runs `fn rollback(ctx)` as the environment's policy says.
    fn run_rollback(&self, request: &RollbackRequest) -> RollbackRecord {
        let console = self.console();
        if !Host::defines(&self.ast, "rollback", 1) {
            console.error(&format!(
                "a rollback is needed ({}) but {} defines no fn rollback(ctx)",
                request.reason, self.name
            ));
            return RollbackRecord::for_request(RollbackStatus::Missing, request);
        }
        let policy = self.env.rollback;
        if policy == RollbackPolicy::Never {
            console.warn(&format!(
                "a rollback is needed ({}) but environment {} has rollback = \"never\"",
                request.reason, self.env.name
            ));
            return RollbackRecord::for_request(RollbackStatus::Never, request);
        }
        // A timeout cancelled the run; the rollback itself must still be able to run.
        if matches!(
            self.host.state.cancel.reason(),
            Some(CancelReason::Timeout(_))
        ) {
            self.host.state.cancel.reset();
        }
        if policy == RollbackPolicy::Confirm && !self.req.rollback_only {
            let q = format!("Roll back {} ({})?", self.env.name, request.reason);
            match self.host.state.confirm(&q) {
                Ok(true) => {}
                _ => return RollbackRecord::for_request(RollbackStatus::Declined, request),
            }
        }
        console.begin_group("Rollback");
        console.show(&present::rollback_banner(None, &request.reason));
        let score = self
            .host
            .state
            .pipeline
            .read(|p| p.has_phases().then(|| p.total(&self.config.thresholds).0));
        let mut ctx = Map::new();
        ctx.insert("reason".into(), request.reason.clone().into());
        ctx.insert(
            "phase".into(),
            request
                .phase
                .clone()
                .map(Dynamic::from)
                .unwrap_or(Dynamic::UNIT),
        );
        ctx.insert(
            "score".into(),
            score.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
        );
        ctx.insert("env".into(), self.env.name.clone().into());
        // The remote hosts the run changed, in the order they changed, less those already
        // rolled back on their own (failed within the failure budget); for `deployer
        // rollback`, those of the last deploy's record.
        let changed = if self.req.rollback_only {
            self.last_deploy_hosts()
        } else {
            self.host.state.remote.to_roll_back()
        };
        ctx.insert(
            "hosts".into(),
            changed
                .iter()
                .cloned()
                .map(Dynamic::from)
                .collect::<rhai::Array>()
                .into(),
        );
        ctx.insert("dry_run".into(), self.req.dry_run.into());
        let started = Instant::now();
        // --timeout bounds the deployment, not the rollback: it has its own bound.
        self.host.stop_timeout();
        let limit = match self.req.rollback_timeout {
            Some(d) => d,
            None => {
                crate::host::env_duration("DEPLOYER_ROLLBACK_TIMEOUT", DEFAULT_ROLLBACK_TIMEOUT)
                    .unwrap_or_else(|e| {
                        console.warn(&format!(
                            "{e}; using {}",
                            format_duration(DEFAULT_ROLLBACK_TIMEOUT)
                        ));
                        DEFAULT_ROLLBACK_TIMEOUT
                    })
            }
        };
        let was = self.host.state.remote.set_rolling_back(true);
        let result = self.host.bounded(limit, CancelReason::RollbackTimeout, || {
            self.host.call_fn(&self.ast, "rollback", vec![ctx.into()])
        });
        self.host.state.remote.set_rolling_back(was);
        let mut record = RollbackRecord::for_request(RollbackStatus::Ok, request);
        record.duration_ms = started.elapsed().as_millis() as u64;
        record.hosts = changed;
        match result {
            Ok(_) => console.success(&format!(
                "rollback succeeded in {}",
                format_duration(started.elapsed())
            )),
            Err(e) => {
                let d = self.host.diagnose(&e, &self.name);
                self.host.print(&d);
                record.status = RollbackStatus::Failed;
                record.error = Some(message_of(&e));
                if is_terminated(&e) {
                    record.error = Some(format!("interrupted: {}", message_of(&e)));
                }
                if let Some(CancelReason::RollbackTimeout(_)) = self.host.state.cancel.reason() {
                    let msg = format!(
                        "the rollback of {env} was stopped after {} (--rollback-timeout, DEPLOYER_ROLLBACK_TIMEOUT) part-way through: {env} may be half rolled back, neither the new release nor the previous one for sure. Check it now, then run `deployer rollback {} --env {env}` again or restore it by hand",
                        format_duration(limit),
                        self.name,
                        env = self.env.name
                    );
                    console.error(&msg);
                    record.error = Some(msg);
                }
            }
        }
        record
    }

    /// `deployer rollback` of an environment with hosts: the hosts the last deploy of this
    /// environment and script changed (less those it rolled back on their own), from its
    /// history line; every host of the environment when no record says.
    fn last_deploy_hosts(&self) -> Vec<String> {
        let inventory = self.host.state.remote.inventory();
        if inventory.hosts.is_empty() {
            return Vec::new();
        }
        let console = self.console();
        let path = self.config.state_dir.join("history.jsonl");
        let like = history::Like {
            env: &self.env.name,
            script: &self.name,
            mode: "deploy",
        };
        let last = history::read_recent(&path, 512 * 1024, like, 1)
            .ok()
            .and_then(|h| history::previous(&h, like, "").cloned());
        match last.as_ref().and_then(|e| e.hosts.as_ref().map(|s| (e, s))) {
            Some((e, summary)) => {
                let hosts = summary.to_roll_back();
                console.info(&format!(
                    "the last deploy of {} (run {}) changed {}",
                    self.env.name,
                    e.run_id,
                    if hosts.is_empty() {
                        "no host that is not rolled back already".to_string()
                    } else {
                        hosts.join(", ")
                    }
                ));
                if e.rollback.as_deref() == Some("ok") {
                    console.warn(&format!(
                        "run {} was already rolled back: rolling its hosts back again may go one release further back",
                        e.run_id
                    ));
                }
                hosts
            }
            None => {
                console.warn(&format!(
                    "no record of which hosts the last deploy of {} changed: ctx.hosts lists every host of the environment ({})",
                    self.env.name,
                    inventory.hosts.join(", ")
                ));
                inventory.hosts
            }
        }
    }

    fn manual_rollback(&self) -> (Ended, RollbackRecord) {
        let request = RollbackRequest {
            reason: "requested with deployer rollback".into(),
            phase: None,
        };
        let q = format!("Roll back {} now?", self.env.name.to_uppercase());
        if !self.req.dry_run {
            match self.host.state.confirm(&q) {
                Ok(true) => {}
                Ok(false) => {
                    return (
                        Ended::Declined("rollback not run: it was not confirmed; use --yes to confirm without a terminal".into()),
                        RollbackRecord::for_request(RollbackStatus::Declined, &request),
                    )
                }
                Err(_) => {
                    return (
                        Ended::Interrupted(Diagnostic::error("interrupted at the confirmation", None)),
                        RollbackRecord::for_request(RollbackStatus::Declined, &request),
                    )
                }
            }
        }
        let record = self.run_rollback(&request);
        let ended = if record.status == RollbackStatus::Ok {
            Ended::Completed
        } else {
            Ended::Failed(None)
        };
        (ended, record)
    }
}
