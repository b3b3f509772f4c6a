"""Pure per-customer logic the flows compose: parsing, features, scoring, rules, profiles."""
