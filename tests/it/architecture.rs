//! The house's rules, checked on the source: data flows one way between the top-level modules
//! of `src/` (no import circle), the simulator stays an independent reading of the contract,
//! and no file or function grows past the size a reader takes in at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file, in lines (tests included).
const MAX_FILE_LINES: usize = 600;
/// Longest function outside tests, in lines.
const MAX_FN_LINES: usize = 80;

fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
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
    assert!(g.contains_key("engine") && g.contains_key("sim"), "{g:?}");
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

#[test]
fn the_simulator_imports_nothing_from_the_client_side() {
    let g = graph();
    let sim = &g["sim"];
    for client in ["input", "engine", "api", "output", "checkpoint", "commands"] {
        assert!(!sim.contains(client), "sim imports {client}: {sim:?}");
    }
    assert!(
        g["model"].is_empty(),
        "model depends on nothing: {:?}",
        g["model"]
    );
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, t)| t.lines().count() > MAX_FILE_LINES)
        .map(|(p, t)| format!("{} ({} lines)", p.display(), t.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:#?}"
    );
}

/// Functions of `text` (outside its tests) longer than `max` lines: name and length.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim_start();
        let indent = &l[..l.len() - t.len()];
        // Visibility and qualifiers, then `fn`.
        let mut rest = t;
        if let Some(r) = rest.strip_prefix("pub") {
            rest = match r.strip_prefix('(') {
                Some(v) => v.split_once(") ").map_or("", |(_, r)| r),
                None => r.trim_start(),
            };
        }
        for q in ["const ", "async ", "unsafe "] {
            rest = rest.strip_prefix(q).unwrap_or(rest);
        }
        let Some(after) = rest.strip_prefix("fn ") else {
            i += 1;
            continue;
        };
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body ends at the first line that is the closing brace at the same indent.
        let end = (i..lines.len()).find(|&j| {
            lines[j].starts_with(indent) && lines[j][indent.len()..].starts_with('}')
                || (j == i && t.ends_with(';'))
        });
        let Some(end) = end else { break };
        let n = end - i + 1;
        if n > max {
            out.push((name, n));
        }
        i = end + 1;
    }
    out
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for (p, text) in sources() {
        for (name, n) in long_functions(&text, MAX_FN_LINES) {
            long.push(format!("{}: {name} ({n} lines)", p.display()));
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long:#?}"
    );
}

#[test]
fn the_length_check_sees_a_long_function() {
    let mut text = String::from("fn short() {\n}\n\npub(super) async fn long(x: u8) {\n");
    text += &"    let _ = 1;\n".repeat(100);
    text += "}\n";
    assert_eq!(long_functions(&text, 80), vec![("long".to_owned(), 102)]);
}

/// Public items of `text` (outside its tests) without a doc comment: `pub` alone marks the
/// library's surface, so each says what it is for.
fn undocumented_public_items(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let lines: Vec<&str> = code.lines().collect();
    let kinds = [
        "fn ",
        "async fn ",
        "struct ",
        "enum ",
        "const ",
        "static ",
        "type ",
        "trait ",
    ];
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.trim_start().strip_prefix("pub ") else {
            continue;
        };
        if !kinds.iter().any(|k| rest.starts_with(k)) {
            continue;
        }
        // Skip attributes (`#[…]`, possibly over several lines) above the item.
        let above = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim_start())
            .find(|l| !(l.starts_with("#[") || l.ends_with(")]") || l.ends_with(',')));
        if !above.is_some_and(|a| a.starts_with("///")) {
            out.push(rest.to_owned());
        }
    }
    out
}

#[test]
fn every_public_item_has_a_doc_comment() {
    let mut bare = Vec::new();
    for (p, text) in sources() {
        for item in undocumented_public_items(&text) {
            bare.push(format!("{}: {item}", p.display()));
        }
    }
    assert!(
        bare.is_empty(),
        "public items without a doc comment: {bare:#?}"
    );
}

#[test]
fn the_doc_check_sees_a_bare_public_item() {
    let text = "/// Documented.\n#[derive(Debug)]\npub struct A;\n\npub fn bare() {}\n\npub(crate) fn inner() {}\n";
    assert_eq!(
        undocumented_public_items(text),
        vec!["fn bare() {}".to_owned()]
    );
}
