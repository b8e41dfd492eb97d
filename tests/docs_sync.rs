//! The listings in the docs are copies of compiled files; these tests keep
//! them identical, so a listing never shows code that no longer builds.

#[test]
fn extending_guide_lists_the_example() {
    let guide = include_str!("../docs/extending.md");
    let example = include_str!("../examples/krasnoselskii_mann.rs");
    let start = guide
        .find("```rust\n")
        .expect("docs/extending.md has a rust listing")
        + "```rust\n".len();
    let end = start + guide[start..].find("```\n").expect("the listing is closed");
    assert_eq!(
        &guide[start..end],
        example,
        "docs/extending.md differs from examples/krasnoselskii_mann.rs; copy the file into the listing"
    );
}
