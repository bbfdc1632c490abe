mod run;
mod wiring;

fn main() {
    let _ = wiring::backends();
    let _ = run::dispatch;
}
