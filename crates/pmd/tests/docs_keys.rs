//! The user guide's devargs tables are the registry's: every registered driver has a section
//! whose key table is exactly what `DriverSpec::markdown_keys` generates, and no driver that is
//! not registered is documented as available.

#[test]
fn user_guide_tables_match_the_registry() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/user-guide.md");
    let guide = std::fs::read_to_string(path).expect("docs/user-guide.md");
    let mut stale: Vec<String> = Vec::new();
    for d in ferrovia_pmd::registry::drivers() {
        let table = d.markdown_keys();
        if !guide.contains(&table) {
            stale.push(format!(
                "docs/user-guide.md: the key table of {} is missing or out of date; paste this under its heading (all tables: cargo test -p ferrovia-pmd --test docs_keys -- --ignored --nocapture):\n\n{table}",
                d.name
            ));
        }
        for k in d.keys {
            if !guide.contains(&format!("`{}`", k.name)) {
                stale.push(format!(
                    "{}: key {} is not in docs/user-guide.md",
                    d.name, k.name
                ));
            }
        }
    }
    assert!(stale.is_empty(), "{}", stale.join("\n\n"));
}

/// Prints every driver's table, to paste into docs/user-guide.md:
/// `cargo test -p ferrovia-pmd --test docs_keys -- --ignored --nocapture`.
#[test]
#[ignore = "prints the tables for the user guide"]
fn print_user_guide_tables() {
    for d in ferrovia_pmd::registry::drivers() {
        println!("### {}\n\n{}", d.name, d.markdown_keys());
    }
}
