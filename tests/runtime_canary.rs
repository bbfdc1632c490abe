//! Signals reach only the container's own processes. A canary process runs
//! in the host's namespaces beside the runtime's whole life cycle (start,
//! stop, stop -k, execute, ephemeral run, a killed monitor and the reconcile
//! after it, destroy -f of a running container), and beside run records
//! forged to name it (a reused pid: right number, wrong start time) or to
//! name pid 0 and -1, which a kill(2) would turn into "every process". It
//! must survive all of them.

#[path = "runtime_helpers.rs"]
mod helpers;

use helpers::*;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Canary(Child);

impl Canary {
    fn new() -> Canary {
        Canary(Command::new("sleep").arg("1000").spawn().unwrap())
    }
    fn pid(&self) -> i64 {
        self.0.id() as i64
    }
    fn alive(&mut self, after: &str) {
        assert!(
            self.0.try_wait().unwrap().is_none() && pid_alive(self.pid()),
            "the canary died after {after}"
        );
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start time of `pid` (field 22 of its stat), as run records hold it.
fn start_time(pid: i64) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn record_path(rt: &Rt, name: &str) -> std::path::PathBuf {
    let key = rt.lxcpath.display().to_string().replace('_', "__").replace('/', "_");
    let dir = rt.run_dir.join("state").join(key);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.json"))
}

fn wait_gone(pid: i64) {
    let t = Instant::now();
    while pid_alive(pid) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_canary_survives_every_operation() {
    let rt = Rt::new();
    let mut canary = Canary::new();
    rt.container("c1", "lxc.include = /usr/share/lxc/config/common.conf\n");
    rt.ok("lxc-start", &["-n", "c1"]);
    rt.ok("lxc-stop", &["-n", "c1", "-t", "5"]);
    canary.alive("start, stop");
    rt.ok("lxc-start", &["-n", "c1"]);
    rt.ok("lxc-stop", &["-n", "c1", "-k"]);
    canary.alive("stop -k");
    rt.ok("lxc-execute", &["-n", "c1", "--", "/bin/true"]);
    rt.ok("lxc-copy", &["-n", "c1", "-e", "-F", "--", "/bin/true"]);
    canary.alive("execute, ephemeral run");
    rt.ok("lxc-start", &["-n", "c1"]);
    let monitor = rt.record("c1").unwrap()["monitor_pid"].as_i64().unwrap();
    // SAFETY: kill takes integers only and touches no memory; the pid comes from the run record of a container this
    // test started.
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    wait_gone(monitor);
    rt.ok("lxc-ls", &[]);
    canary.alive("a killed monitor and reconcile");
    rt.ok("lxc-destroy", &["-n", "c1", "-f"]);
    canary.alive("destroy -f of a running container");
    rt.assert_clean(&[]);
}

#[test]
fn forged_records_signal_nothing() {
    let rt = Rt::new();
    let mut canary = Canary::new();
    let start = start_time(canary.pid());
    for (name, init, init_start, monitor) in [
        // The canary's pid with another start time: a reused pid.
        ("c1", canary.pid(), start + 1, serde_json::json!(canary.pid())),
        ("c2", 0, 0, serde_json::json!(null)),
        ("c3", -1, 0, serde_json::json!(-1)),
    ] {
        rt.container(name, "");
        let rec = serde_json::json!({
            "init_pid": init,
            "init_start": init_start,
            "monitor_pid": monitor,
            "monitor_start": start + 1,
            "ephemeral": false,
        });
        std::fs::write(record_path(&rt, name), rec.to_string()).unwrap();
        let e = rt.fails("lxc-stop", &["-n", name, "-k"]);
        assert!(e.contains("not running"), "{name}: {e}");
        canary.alive(&format!("lxc-stop -k of {name}"));
        assert_eq!(rt.state(name), "STOPPED");
        rt.ok("lxc-ls", &["--fancy"]);
        canary.alive(&format!("reconcile with {name}'s record"));
        std::fs::write(record_path(&rt, name), rec.to_string()).unwrap();
        rt.ok("lxc-destroy", &["-n", name, "-f"]);
        canary.alive(&format!("lxc-destroy -f of {name}"));
    }
    rt.assert_clean(&[]);
}
