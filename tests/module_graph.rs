//! The module graphs stay acyclic and one-way. In every crate (and `xtask`), no file's module
//! reaches itself through the modules it imports. In `ropo-train`, the records module imports
//! nothing of the crate, the training loop never imports a report or a plot, and
//! `docs/architecture.md` draws exactly its top-level arrows, as it draws exactly the
//! dependencies between the workspace's crates.
//!
//! The graph is read from the sources at the granularity of files: a module is a file
//! (`src/formats/reader.rs` is `formats::reader`; `src/formats.rs` is `formats`). An arrow
//! `a --> b` stands for every `crate::…` and `super::…` path in `a` that names `b` (the
//! longest module the path names; `use super::{x, y::z}` groups are read item by item),
//! comments left out. Arrows between a module and its own ancestors or descendants are the
//! module tree (a folder module declaring and using its parts, a part using its folder's shared
//! items), not circles, and are left out; what remains must be acyclic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;
type Graph = BTreeMap<Module, BTreeSet<Module>>;

#[test]
fn no_crate_has_an_import_circle() {
    let root = workspace();
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join("src"))
        .filter(|src| src.is_dir())
        .collect();
    sources.push(root.join("xtask/src"));
    sources.push(root.join("src"));
    sources.sort();
    let mut circles = Vec::new();
    for src in &sources {
        if let Some(cycle) = find_cycle(&file_graph(src)) {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            circles.push(format!("{}: {}", src.display(), names.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `ropo-train`'s graph of top-level modules: `a --> b` where a file of `a` (or under `a/`)
/// names `b`.
fn train_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in file_graph(&workspace().join("crates/ropo-train/src")) {
        let Some(top) = module.first() else { continue };
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(
            targets
                .into_iter()
                .filter_map(|target| target.first().cloned())
                .filter(|target| target != top),
        );
    }
    graph
}

#[test]
fn records_import_nothing_and_the_loop_imports_no_report_or_plot() {
    let graph = train_graph();
    assert_eq!(graph["records"], BTreeSet::new(), "records imports nothing");
    let ends = ["report", "plots", "rounds_report", "trainer_output"];
    for (module, targets) in &graph {
        if ends.contains(&module.as_str()) {
            continue;
        }
        for end in ends {
            assert!(!targets.contains(end), "{module} imports {end}");
        }
    }
}

#[test]
fn the_architecture_doc_draws_the_graph_as_it_is() {
    let drawn = drawn_arrows("# ropo-train's architecture");
    let actual: BTreeSet<(String, String)> = train_graph()
        .into_iter()
        .flat_map(|(from, targets)| targets.into_iter().map(move |to| (from.clone(), to)))
        .collect();
    assert_same_arrows(&drawn, &actual);
}

#[test]
fn the_architecture_doc_draws_the_crates_as_they_depend() {
    let drawn = drawn_arrows("## The crates");
    let mut manifests = vec![
        workspace().join("Cargo.toml"),
        workspace().join("xtask/Cargo.toml"),
    ];
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        manifests.push(entry.unwrap().path().join("Cargo.toml"));
    }
    let packages: Vec<toml::Table> = manifests
        .iter()
        .map(|path| toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
        .collect();
    let name = |package: &toml::Table| package["package"]["name"].as_str().unwrap().to_owned();
    let ours: BTreeSet<String> = packages.iter().map(name).collect();
    let actual: BTreeSet<(String, String)> = packages
        .iter()
        .flat_map(|package| {
            let from = name(package);
            let dependencies = package
                .get("dependencies")
                .and_then(toml::Value::as_table)
                .cloned()
                .unwrap_or_default();
            dependencies
                .keys()
                .filter(|dependency| ours.contains(*dependency))
                .map(|dependency| (from.clone(), dependency.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_same_arrows(&drawn, &actual);
}

/// The arrows of the first mermaid graph after the line `heading` of docs/architecture.md.
fn drawn_arrows(heading: &str) -> BTreeSet<(String, String)> {
    let doc = std::fs::read_to_string(workspace().join("docs/architecture.md")).unwrap();
    doc.lines()
        .skip_while(|line| *line != heading)
        .skip_while(|line| *line != "```mermaid")
        .take_while(|line| *line != "```")
        .filter_map(|line| line.trim().split_once(" --> "))
        .map(|(from, to)| (from.trim().to_string(), to.trim().to_string()))
        .collect()
}

/// Fails, listing the differences, unless the drawn arrows are the actual ones.
fn assert_same_arrows(drawn: &BTreeSet<(String, String)>, actual: &BTreeSet<(String, String)>) {
    let missing: Vec<String> = actual
        .difference(drawn)
        .map(|(a, b)| format!("    {a} --> {b}"))
        .collect();
    let stale: Vec<String> = drawn
        .difference(actual)
        .map(|(a, b)| format!("    {a} --> {b}"))
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md is out of date;\nnot drawn:\n{}\ndrawn but gone:\n{}",
        missing.join("\n"),
        stale.join("\n")
    );
}

/// Every module (file) under `src` with the modules it imports, tree arrows left out.
fn file_graph(src: &Path) -> Graph {
    let files = rust_files(src);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for file in &files {
        let module = module_of(src, file);
        let code = without_comments(&std::fs::read_to_string(file).unwrap());
        for path in paths(&code) {
            let Some(target) = resolve(&module, &path, &modules) else {
                continue;
            };
            let related = target.starts_with(&module) || module.starts_with(&target);
            if !related {
                graph.get_mut(&module).unwrap().insert(target);
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A file's module path: `formats/reader.rs` and `formats/reader/mod.rs` are
/// `["formats", "reader"]`; the crate root (`lib.rs`, `main.rs`) is `[]`.
fn module_of(src: &Path, file: &Path) -> Module {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts: Module = relative
        .iter()
        .map(|part| part.to_str().unwrap().to_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.strip_suffix(".rs").unwrap().to_owned();
    let is_root = parts.is_empty() && (stem == "lib" || stem == "main");
    if !is_root && stem != "mod" {
        parts.push(stem);
    }
    parts
}

fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path starting with `crate::` or `super::` in `code`, each as its segments (`super`
/// kept), a group `{a, b::c}` giving one path per item.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        for (at, _) in code.match_indices(start) {
            let word_before = at > 0
                && (bytes[at - 1].is_ascii_alphanumeric()
                    || bytes[at - 1] == b'_'
                    || bytes[at - 1] == b':');
            if word_before {
                continue;
            }
            let head = start.trim_end_matches("::").to_owned();
            read_tree(&code[at + start.len()..], vec![head], &mut found);
        }
    }
    found
}

/// Reads the rest of a path after `prefix::`: segments, then possibly a `{…}` group.
fn read_tree(rest: &str, prefix: Vec<String>, found: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut rest = rest;
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            for item in split_group(group) {
                read_tree(item.trim(), path.clone(), found);
            }
            return;
        }
        let segment = identifier(rest);
        if segment.is_empty() {
            break;
        }
        rest = &rest[segment.len()..];
        path.push(segment);
        match rest.strip_prefix("::") {
            Some(more) => rest = more,
            None => break,
        }
    }
    found.push(path);
}

/// The items of a group whose text starts after its `{`, up to the matching `}`.
fn split_group(group: &str) -> Vec<&str> {
    let (mut depth, mut item_start) = (1, 0);
    let mut items = Vec::new();
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => {
                items.push(&group[item_start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 1 => {
                items.push(&group[item_start..i]);
                item_start = i + 1;
            }
            _ => {}
        }
    }
    items
}

fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The longest module `path` (read in `module`) names, if any.
fn resolve(module: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let mut base: Module;
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            rest = &rest[1..];
        }
        Some("super") => {
            base = module.clone();
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    let mut best = base.clone();
    for segment in rest {
        base.push(segment.clone());
        if modules.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    Some(best)
}

/// A cycle of the graph as a path that ends where it starts, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<Module>> {
    fn visit(
        node: &Module,
        graph: &Graph,
        path: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.clone());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn paths_groups_and_planted_circles_are_read() {
    let module = |text: &str| -> Module {
        text.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let modules: BTreeSet<Module> = ["", "formats", "formats::reader", "formats::jsonl", "error"]
        .into_iter()
        .map(module)
        .collect();
    let reader = module("formats::reader");
    let code = "use super::{jsonl::Raw, Limits};\nuse crate::{error::E, Pair};\nlet x = crate::formats::jsonl::f();";
    let targets: BTreeSet<Module> = paths(code)
        .iter()
        .filter_map(|p| resolve(&reader, p, &modules))
        .collect();
    let expected: BTreeSet<Module> = ["formats::jsonl", "formats", "error", ""]
        .into_iter()
        .map(module)
        .collect();
    assert_eq!(targets, expected);
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (module(from), BTreeSet::from([module(to)])))
        .collect();
    assert_eq!(
        find_cycle(&graph).unwrap(),
        ["a", "b", "c", "a"].map(module).to_vec()
    );
}
