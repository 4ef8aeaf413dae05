//! Every built-in rule against its own examples.

use crate::common::scanner;

#[test]
fn at_least_120_rules_each_with_examples() {
    let scanner = scanner();
    let rules = scanner.rules().rules();
    assert!(rules.len() >= 120, "only {} rules", rules.len());
    for rule in rules {
        assert!(
            !rule.spec.examples.is_empty(),
            "{} has no example",
            rule.spec.id
        );
        assert!(
            !rule.spec.negative_examples.is_empty(),
            "{} has no negative example",
            rule.spec.id
        );
    }
}

#[test]
fn every_rule_matches_its_examples_and_not_its_negatives() {
    let failures = scanner().check_rule_examples();
    let report: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        report.join("\n")
    );
}
