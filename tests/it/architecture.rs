//! The house's rules, checked on the source: data flows one way between the top-level modules
//! of `src/` (no import circle), the files of one module do not import each other in a
//! circle, and the simulator crate stays an independent reading of the contract (it depends
//! on the model crate and nothing of the client's, as `cargo metadata` resolves it), the
//! design note's module table is the code's, and no function packs its arguments into a
//! tuple. Documentation is the compiler's (`#![warn(missing_docs)]` in every crate). Sizes
//! are not checked here: a long file or function is a smell to look at (clippy's `too_many_lines`
//! and `too_many_arguments`, with the thresholds in `clippy.toml`), not a line to stay under.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources() -> Vec<(PathBuf, String)> {
    sources_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// Every Rust file below `root`, with its text.
fn sources_in(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (`src/engine/run.rs` → `engine`).
fn module_of(p: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = p.strip_prefix(&src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// Top-level modules a file's code names (`crate::x`), outside its tests.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `simbulk::crate::` never occurs; skip `$crate::` in macros.
        if code[..i].ends_with('$') {
            continue;
        }
        let name: String = code[i + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, text) in sources() {
        let m = module_of(&p);
        if m == "lib" || m == "main" {
            continue;
        }
        let e = g.entry(m.clone()).or_default();
        for i in imports(&text) {
            if i != m {
                e.insert(i);
            }
        }
    }
    g
}

/// A cycle in `g`, if there is one.
fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_owned());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn there_is_no_import_circle_between_top_level_modules() {
    let g = graph();
    assert!(
        g.contains_key("engine") && g.contains_key("commands"),
        "{g:?}"
    );
    if let Some(c) = cycle(&g) {
        panic!("import circle: {}\nthe graph: {g:#?}", c.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_circle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert!(cycle(&g).is_none());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle(&g).unwrap().join(" -> "), "a -> b -> c -> a");
}

/// Every package the workspace's package `name` depends on, directly or not, as Cargo
/// resolves it for this host.
fn dependencies_of(name: &str) -> BTreeSet<String> {
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .unwrap();
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeMap<&str, &str> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = m["resolve"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let start = names.iter().find(|(_, n)| **n == name).unwrap().0;
    let (mut seen, mut todo) = (BTreeSet::new(), vec![*start]);
    while let Some(id) = todo.pop() {
        for d in nodes[id]["deps"].as_array().unwrap() {
            let dep = d["pkg"].as_str().unwrap();
            if seen.insert(dep) {
                todo.push(dep);
            }
        }
    }
    seen.into_iter().map(|id| names[id].to_owned()).collect()
}

#[test]
fn the_simulator_crate_depends_on_nothing_of_the_client() {
    let sim = dependencies_of("simbulk-sim");
    assert!(
        sim.contains("simbulk-model") && sim.contains("axum"),
        "{sim:?}"
    );
    for client in ["simbulk", "reqwest", "rustls", "redis", "clap", "csv"] {
        assert!(
            !sim.contains(client),
            "the simulator depends on {client}: {sim:?}"
        );
    }
    let model = dependencies_of("simbulk-model");
    for other in ["simbulk", "simbulk-sim", "tokio", "reqwest", "axum"] {
        assert!(
            !model.contains(other),
            "the model depends on {other}: {model:?}"
        );
    }
}

/// The sibling files a file of a module names (`super::x`, `crate::m::x`), outside its
/// tests and comments: the edges of the file graph inside each module folder, keyed by
/// folder (`engine`, `crates/sim`, `crates/sim/rules`) and file stem. The files at the root
/// of the CLI's `src` are the top-level modules (their graph is checked above); those at the
/// root of a member crate are siblings like any.
fn file_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut roots = vec![(here.join("src"), String::new(), false)];
    for member in ["model", "sim"] {
        roots.push((
            here.join("crates").join(member).join("src"),
            format!("crates/{member}"),
            true,
        ));
    }
    let mut out = BTreeMap::new();
    for (src, prefix, member) in roots {
        let mut by_dir: BTreeMap<PathBuf, Vec<(String, String)>> = BTreeMap::new();
        for (p, text) in sources_in(&src) {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            by_dir
                .entry(p.parent().unwrap().to_owned())
                .or_default()
                .push((stem, text));
        }
        for (dir, files) in by_dir {
            let module = dir
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('/', "::");
            if module.is_empty() && !member {
                continue;
            }
            let key = match (prefix.is_empty(), module.is_empty()) {
                (true, _) => module.replace("::", "/"),
                (false, true) => prefix.clone(),
                (false, false) => format!("{prefix}/{}", module.replace("::", "/")),
            };
            let paths = [
                String::from("super::"),
                if module.is_empty() {
                    String::from("crate::")
                } else {
                    format!("crate::{module}::")
                },
            ];
            out.insert(key, siblings(&files, &paths));
        }
    }
    out
}

/// The edges among `files` of one folder: each file to the siblings it names through one
/// of `paths`.
fn siblings(files: &[(String, String)], paths: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let stems: BTreeSet<&str> = files.iter().map(|(s, _)| s.as_str()).collect();
    let mut g = BTreeMap::new();
    for (stem, text) in files {
        if ["mod", "lib", "main"].contains(&stem.as_str()) {
            continue;
        }
        let code: String = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut named = BTreeSet::new();
        for prefix in paths {
            for (i, _) in code.match_indices(prefix.as_str()) {
                let name: String = code[i + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name != *stem
                    && stems.contains(name.as_str())
                    && !["mod", "lib"].contains(&name.as_str())
                {
                    named.insert(name);
                }
            }
        }
        g.insert(stem.clone(), named);
    }
    g
}

#[test]
fn no_import_loop_between_files_inside_a_module() {
    let mut looped = Vec::new();
    for (module, g) in file_graph() {
        if let Some(c) = cycle(&g) {
            looped.push((module, c));
        }
    }
    assert!(looped.is_empty(), "file loops: {looped:#?}");
}

#[test]
fn the_file_graph_sees_a_sibling_named_through_super() {
    let g = file_graph();
    assert!(
        g["engine"]["run"].contains("dispatcher"),
        "{:?}",
        g["engine"]["run"]
    );
    assert!(g["engine"]["schedule"].contains("halt"));
    assert!(!g["engine"]["config"].contains("setup"));
}

/// The "module | imports" table of `docs/design/architecture.md`'s data-flow section.
fn documented_graph() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/design/architecture.md"),
    )
    .unwrap();
    let section = doc.split("## Data flow").nth(1).unwrap();
    let names = |cell: &str| -> Vec<String> {
        cell.split(',')
            .map(|n| n.trim().trim_matches('`').to_owned())
            .filter(|n| !n.is_empty() && n != "nothing")
            .collect()
    };
    let mut g = BTreeMap::new();
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with("| module | imports |"))
        .skip(2)
    {
        let cells: Vec<&str> = line.split('|').collect();
        if cells.len() < 4 {
            break;
        }
        for m in names(cells[1]) {
            g.insert(m, names(cells[2]).into_iter().collect::<BTreeSet<_>>());
        }
    }
    g
}

#[test]
fn the_documented_module_graph_is_the_code_s() {
    let code = graph();
    let doc = documented_graph();
    assert!(doc.contains_key("engine"), "no table found: {doc:?}");
    assert_eq!(
        doc, code,
        "docs/design/architecture.md's table differs from the code"
    );
}

/// Parameter lines of `text` (outside its tests) that pack several arguments into one
/// tuple pattern (`(a, b): (A, B),`): a way round clippy's argument count, not a design.
fn tuple_packed_parameters(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    code.lines()
        .filter(|l| {
            let t = l.trim();
            let Some((pattern, _)) = t.split_once("): (") else {
                return false;
            };
            t.starts_with('(')
                && t.ends_with(',')
                && pattern[1..]
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == ',' || c == ' ')
        })
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn no_function_packs_its_arguments_into_a_tuple() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut packed = Vec::new();
    for root in [here.join("src"), here.join("crates")] {
        for (p, text) in sources_in(&root) {
            for l in tuple_packed_parameters(&text) {
                packed.push(format!("{}: {l}", p.display()));
            }
        }
    }
    assert!(packed.is_empty(), "tuple-packed parameters: {packed:#?}");
    let sample = "fn f(\n    c: &Client,\n    (a, b): (u64, u64),\n) {}\n";
    assert_eq!(tuple_packed_parameters(sample), ["(a, b): (u64, u64),"]);
}
