//! The shape of the code: no module of `harness` imports one that imports it back (that no property file calls
//! libc is `suites/tests/seam.rs`). Read from the sources (no root needed).
//!
//! Nodes are files (`lab/worker.rs` is `lab::worker`); an edge is any `crate::a::b` path or `super::` path in
//! non-test code, resolved to the longest module path that exists. Test code (`#[cfg(test)]` modules and
//! `tests.rs` files) may reach anywhere and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path → file text, for every `.rs` file under `src`.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            if parts.last().is_some_and(|p| p == "tests") {
                continue;
            }
            out.insert(parts.join("::"), std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

/// The text without comments and without `#[cfg(test)]` items (a module or function that follows the
/// attribute, up to its matching closing brace).
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut pending_cfg_test = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let trimmed = code.trim();
        if skip_depth.is_none() && trimmed.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        let opens = code.matches('{').count() as i32;
        let closes = code.matches('}').count() as i32;
        if pending_cfg_test && skip_depth.is_none() && !trimmed.is_empty() {
            pending_cfg_test = false;
            if opens > closes {
                skip_depth = Some(depth);
            } else {
                // A one-line item (`mod tests;`, a `use`): skip just it.
                depth += opens - closes;
                continue;
            }
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The modules `code` (of module `me`) refers to.
fn references(me: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let resolve = |path: Vec<&str>, refs: &mut BTreeSet<String>| {
        for n in (1..=path.len()).rev() {
            let candidate = path[..n].join("::");
            if known.contains(&candidate) {
                if candidate != me {
                    refs.insert(candidate);
                }
                return;
            }
        }
    };
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let path = ident(&code[i + "crate::".len()..]);
        resolve(path.iter().map(String::as_str).collect(), &mut refs);
    }
    let parent: Vec<&str> = me.split("::").filter(|s| !s.is_empty()).collect();
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with("super::") {
            continue;
        }
        let base = &parent[..parent.len().saturating_sub(1)];
        let path = ident(&code[i + "super::".len()..]);
        let full: Vec<&str> = base
            .iter()
            .copied()
            .chain(path.iter().map(String::as_str))
            .collect();
        resolve(full, &mut refs);
    }
    refs
}

/// Every cycle of the graph, each as a path that ends where it started (one per strongly connected part).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut seen_in_cycle = BTreeSet::new();
    for start in graph.keys() {
        if seen_in_cycle.contains(start) {
            continue;
        }
        // Breadth-first search for the shortest path back to `start`.
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut closing = None;
        while let Some(n) = queue.pop_front() {
            for m in graph.get(&n).into_iter().flatten() {
                if m == start {
                    closing = Some(n.clone());
                    break;
                }
                if !prev.contains_key(m) {
                    prev.insert(m.clone(), n.clone());
                    queue.push_back(m.clone());
                }
            }
            if closing.is_some() {
                break;
            }
        }
        if let Some(last) = closing {
            let mut path = vec![start.clone()];
            let mut n = last;
            let mut back = vec![n.clone()];
            while n != *start {
                n = prev[&n].clone();
                back.push(n.clone());
            }
            back.pop();
            back.reverse();
            path.extend(back);
            path.push(start.clone());
            seen_in_cycle.extend(path.iter().cloned());
            found.push(path);
        }
    }
    found
}

fn graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(m, text)| {
            let deps = references(m, &production_code(text), &known);
            (m.clone(), deps)
        })
        .collect()
}

#[test]
fn no_module_of_the_harness_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/src");
    let graph = graph_of(&src);
    assert!(graph.len() > 20, "read the harness modules: {graph:?}");
    let found = cycles(&graph);
    let shown: Vec<String> = found.iter().map(|c| c.join(" -> ")).collect();
    assert!(
        found.is_empty(),
        "import cycles in harness/src:\n  {}",
        shown.join("\n  ")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_ignores_test_code() {
    let known: BTreeSet<String> = ["", "a", "b", "b::c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a = "use crate::b::c::Thing;\n#[cfg(test)]\nmod tests {\n    use crate::b::Other;\n}\n";
    let c = "pub fn f() { super::helper(); crate::a::g(); }\n";
    let mut graph = BTreeMap::new();
    graph.insert(
        "a".to_string(),
        references("a", &production_code(a), &known),
    );
    graph.insert(
        "b::c".to_string(),
        references("b::c", &production_code(c), &known),
    );
    assert_eq!(graph["a"], BTreeSet::from(["b::c".to_string()]));
    assert_eq!(
        graph["b::c"],
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    let found = cycles(&graph);
    assert_eq!(found, vec![vec!["a", "b::c", "a"]]);
}
