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
    // Scenarios wait on kernel timers (the zero-window one for ~1.3 s): run them 8 at a time.
    let results: Vec<Mutex<Option<String>>> = pairs.iter().map(|_| Mutex::new(None)).collect();
    let next = Mutex::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
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
        let rendered = rendered.into_inner().unwrap().expect("every scenario ran");
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(format!("../snapshots/{}", profile.name));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!(scenario.name.clone(), rendered));
    }
}
