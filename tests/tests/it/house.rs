//! The house rules a reviewer would otherwise check by hand: no two files
//! of one crate (or of the web client) import each other, directly or
//! through others. A circle means neither file can be read, tested or
//! moved without the other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != "node_modules" && name != "bin" && name != "target" {
                    dirs.push(path);
                }
            } else if extensions.iter().any(|ext| name.ends_with(ext)) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A graph of files: who imports whom.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The circles of `graph`: its strongly connected parts of two or more
/// files (Tarjan's algorithm).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut part = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    part.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if part.len() > 1 {
                    part.sort();
                    self.found.push(part);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

/// The module path of a file under `src`: `service/mod.rs` and
/// `service.rs` are `service`; `lib.rs` and `main.rs` the root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut path: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    if path == ["lib"] || path == ["main"] {
        path.clear();
    }
    path
}

/// The code of a Rust file that imports: its unit tests (which reach into
/// their own module) and comments (doc links are not imports) left out.
fn importing_code(source: &str) -> String {
    let source = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path a Rust file names through `crate::` or `super::`, as
/// absolute module paths (`use crate::a::{b, c::{D, e}}` names `a::b`,
/// `a::c::D` and `a::c::e`).
fn named_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let text = |from: usize, n: usize| {
        chars[from..chars.len().min(from + n)]
            .iter()
            .collect::<String>()
    };
    let mut named = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let word = text(i, 7);
        if !(word == "crate::" || word == "super::") || (i > 0 && is_ident(chars[i - 1])) {
            i += 1;
            continue;
        }
        let mut base: Vec<String> = module.to_vec();
        let mut j = i;
        if word == "crate::" {
            base.clear();
            j += 7;
        }
        while text(j, 7) == "super::" {
            base.pop();
            j += 7;
        }
        // The rest of the path, with its `{…}` group when it has one.
        let start = j;
        while j < chars.len() && (is_ident(chars[j]) || chars[j] == ':') {
            j += 1;
        }
        if chars.get(j) == Some(&'{') {
            let mut depth = 0;
            while j < chars.len() {
                match chars[j] {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                j += 1;
                if depth == 0 {
                    break;
                }
            }
        }
        let tree: String = chars[start..j].iter().collect();
        expand_use_tree(&base, &tree, &mut named);
        i = j.max(i + 1);
    }
    named
}

/// `a::{b, c::{D, e}}` under `prefix`: every path it names.
fn expand_use_tree(prefix: &[String], tree: &str, named: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    let segments = |text: &str| {
        text.split(" as ")
            .next()
            .unwrap_or("")
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "self" && *s != "*")
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let Some(open) = tree.find('{') else {
        named.push([prefix, &segments(tree)].concat());
        return;
    };
    let head = [prefix, &segments(&tree[..open])].concat();
    named.push(head.clone());
    let inner = tree[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    let (mut depth, mut from) = (0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand_use_tree(&head, &inner[from..at], named);
                from = at + 1;
            }
            _ => {}
        }
    }
    expand_use_tree(&head, &inner[from..], named);
}

/// Which files of a crate's `src` import which, by module.
fn rust_graph(src: &Path) -> Graph {
    let files: BTreeMap<Vec<String>, PathBuf> = files_under(src, &[".rs"])
        .into_iter()
        .map(|file| (module_of(src, &file), file))
        .collect();
    let mut graph = Graph::new();
    for (module, file) in &files {
        let source = std::fs::read_to_string(file).expect("a source file");
        let code = importing_code(&source);
        let name = module.join("::");
        let imports = graph.entry(name.clone()).or_default();
        for path in named_paths(&code, module) {
            // The longest prefix that is a file of this crate.
            let target = (0..=path.len())
                .rev()
                .map(|n| &path[..n])
                .find(|prefix| files.contains_key(*prefix));
            if let Some(target) = target
                && !target.is_empty()
                && target != module.as_slice()
            {
                imports.insert(target.join("::"));
            }
        }
    }
    graph
}

/// Which files of the web client import which (`import … from './x'`,
/// `export … from`, `import('./x')`; type-only imports count too).
fn web_graph(root: &Path) -> Graph {
    let files = files_under(root, &[".ts", ".tsx"]);
    let known: BTreeSet<PathBuf> = files.iter().cloned().collect();
    let mut graph = Graph::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("a source file");
        let name = file.strip_prefix(root).unwrap().display().to_string();
        let imports = graph.entry(name).or_default();
        for quote in ['\'', '"'] {
            for (at, _) in source.match_indices(&format!("{quote}.")) {
                let before = source[..at].trim_end();
                if !(before.ends_with("from") || before.ends_with("import(")) {
                    continue;
                }
                let spec = &source[at + 1..];
                let spec = &spec[..spec.find(quote).unwrap_or(spec.len())];
                let base = file.parent().unwrap().join(spec);
                let candidates = ["", ".ts", ".tsx", "/index.ts", "/index.tsx"]
                    .map(|ext| PathBuf::from(format!("{}{ext}", base.display())));
                if let Some(target) = candidates.iter().find(|c| known.contains(*c)) {
                    let target = normalise(target);
                    imports.insert(target.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
    }
    graph
}

fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn no_crate_and_no_part_of_the_web_client_imports_in_a_circle() {
    let repo = repo();
    let mut checked = Vec::new();
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&repo).unwrap() {
        let crate_dir = entry.unwrap().path();
        let src = crate_dir.join("src");
        if !crate_dir.join("Cargo.toml").exists() || !src.is_dir() {
            continue;
        }
        let name = crate_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for circle in circles(&rust_graph(&src)) {
            found.push(format!("{name}: {}", circle.join(" ↔ ")));
        }
        checked.push(name);
    }
    for part in ["web/src", "web/e2e"] {
        for circle in circles(&web_graph(&repo.join(part))) {
            found.push(format!("{part}: {}", circle.join(" ↔ ")));
        }
    }
    assert!(checked.len() >= 8, "only {checked:?} were checked");
    assert!(
        found.is_empty(),
        "files importing each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_circle_finder_finds_circles_and_reads_grouped_imports() {
    let graph: Graph = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(circles(&graph), vec![vec!["a", "b", "c"]]);
    let module = vec!["routes".to_owned(), "top_up".to_owned()];
    let named = named_paths(
        "use crate::{error::ApiError, routes::{balance::B, health}};\nuse super::read_body;",
        &module,
    );
    for expected in [
        &["error", "ApiError"][..],
        &["routes", "balance", "B"],
        &["routes", "health"],
        &["routes", "read_body"],
    ] {
        assert!(
            named.iter().any(|path| path == expected),
            "{expected:?} not in {named:?}"
        );
    }
}

/// Every Markdown file of the repository (not dependencies, not builds).
fn markdown_files(repo: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![repo.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let skipped = ["target", "node_modules", "test-results", "dist"];
                if !name.starts_with('.') && !skipped.contains(&name.as_str()) {
                    dirs.push(path);
                }
            } else if name.ends_with(".md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped,
/// spaces made hyphens.
fn anchor_of(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (fenced code left out).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.insert(anchor_of(line.trim_start_matches('#')));
        }
    }
    found
}

/// The targets of a Markdown file's `[text](target)` links, outside code.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut targets = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code is not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        for (at, _) in prose.match_indices("](") {
            let rest = &prose[at + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].trim().to_owned());
            }
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_docs_reaches_its_file_and_heading() {
    let repo = repo();
    let files = markdown_files(&repo);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let markdown = std::fs::read_to_string(file).unwrap();
        for target in link_targets(&markdown) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let linked = match path {
                "" => file.clone(),
                path => normalise(&file.parent().unwrap().join(path)),
            };
            let shown = file.strip_prefix(&repo).unwrap().display();
            checked += 1;
            if !linked.exists() {
                broken.push(format!("{shown}: {target} (no such file)"));
                continue;
            }
            if let Some(anchor) = anchor
                && linked.extension().is_some_and(|ext| ext == "md")
            {
                let headings = anchors(&std::fs::read_to_string(&linked).unwrap());
                if !headings.contains(anchor) {
                    broken.push(format!("{shown}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(
        files.len() >= 15 && checked >= 30,
        "{} files, {checked} links",
        files.len()
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_checker_reads_headings_and_links_as_github_does() {
    assert_eq!(
        anchor_of(" Operating it: metrics, alerts and the API document"),
        "operating-it-metrics-alerts-and-the-api-document"
    );
    assert_eq!(
        anchor_of("Live balances (`WatchBalance`)"),
        "live-balances-watchbalance"
    );
    let markdown =
        "# A `b`\n```\n# not a heading [x](nowhere.md)\n```\nSee [c](docs/c.md#a-b) and `[d](e)`.";
    assert_eq!(anchors(markdown), BTreeSet::from(["a-b".to_owned()]));
    assert_eq!(link_targets(markdown), vec!["docs/c.md#a-b"]);
}

#[test]
fn the_readme_stays_short() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: move details to docs/"
    );
}

/// Files stay small enough to read in one sitting: about 450 lines of
/// source, 600 of tests (a crate's `tests/` and a module's `tests.rs`).
#[test]
fn no_rust_file_outgrows_its_limit() {
    let repo = repo();
    let mut too_long = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&repo).unwrap() {
        let crate_dir = entry.unwrap().path();
        if !crate_dir.join("Cargo.toml").exists() {
            continue;
        }
        // Binaries too (`files_under` leaves `bin/` folders out).
        let mut files = files_under(&crate_dir, &[".rs"]);
        files.extend(files_under(&crate_dir.join("src/bin"), &[".rs"]));
        for file in files {
            let relative = file.strip_prefix(&repo).unwrap().display().to_string();
            if relative.contains("/target/") {
                continue;
            }
            let is_test = relative.contains("/tests/") || relative.ends_with("/tests.rs");
            let limit = if is_test { 600 } else { 470 };
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            checked += 1;
            if lines > limit {
                too_long.push(format!("{relative}: {lines} lines (limit {limit})"));
            }
        }
    }
    assert!(checked > 100, "only {checked} files");
    assert!(
        too_long.is_empty(),
        "split these by subject:\n{}",
        too_long.join("\n")
    );
}
