//! Snapshot expectations checked by insta: every named scenario under every profile renders exactly as the
//! files under snapshots/<profile>/ say. Review a change with `cargo insta review` or `netconform snapshot`
//! (see the README's snapshot workflow).

use std::sync::Mutex;

use harness::snapshot::{self, PROFILES};

#[test]
fn every_scenario_matches_its_snapshot_in_every_profile() {
    let pairs: Vec<_> = PROFILES
        .iter()
        .flat_map(|p| suites::scenarios::all().into_iter().map(move |s| (p, s)))
        .collect();
    // Scenarios wait on kernel timers (the zero-window one for ~1.3 s): run a few at a time, not more (the
    // three-segment close needs b to react within the 40 ms delayed-ACK timer).
    let results: Vec<Mutex<Option<String>>> = pairs.iter().map(|_| Mutex::new(None)).collect();
    let next = Mutex::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = {
                    let mut n = next.lock().unwrap();
                    *n += 1;
                    *n - 1
                };
                let Some((profile, scenario)) = pairs.get(i) else {
                    return;
                };
                let rendered = snapshot::run_scenario(scenario, profile, 1)
                    .unwrap_or_else(|e| panic!("{}/{}: {e}", profile.name, scenario.name));
                *results[i].lock().unwrap() = Some(rendered);
            });
        }
    });
    for ((profile, scenario), rendered) in pairs.iter().zip(results) {
        let mut rendered = rendered.into_inner().unwrap().expect("every scenario ran");
        // Named tolerance: in the three-segment close, b's close() races the kernel's ACK of a's FIN
        // (measured: 1 run in ~1,600 sends the ACK first). One re-run is allowed for that scenario only.
        if scenario.name.starts_with("close-three-segments") {
            let path = snapshot::snapshot_path(
                std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots")),
                profile.name,
                &scenario.name,
            );
            if snapshot::read_snapshot(&path).is_some_and(|expected| expected != rendered) {
                rendered = snapshot::run_scenario(scenario, profile, 1).unwrap();
            }
        }
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(format!("../snapshots/{}", profile.name));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!(scenario.name.clone(), rendered));
    }
}
