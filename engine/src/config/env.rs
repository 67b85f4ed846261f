//! Environment overrides (12-factor): `SMPPGW__SERVER__LISTEN=0.0.0.0:2775`,
//! `SMPPGW__VENDOR__SIM__PASSWORD=...`, `SMPPGW__ROUTE__DEFAULT__VENDORS=a,b`,
//! `SMPPGW__CAMPAIGN__C1ABC23__SEGMENTS_PER_MINUTE=600`.
//!
//! They are spliced into the parsed document before anything is checked, so an overridden value
//! goes through exactly the checks of a value in the file. Each spliced key and value gets a span
//! past the end of the document that encodes which variable it came from: an error about it then
//! names the variable instead of a line.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ENV_PREFIX;
use super::error::ErrorKind;
use super::schema::{Field, Fix, Kind, Problem, Section, did_you_mean, type_name};

/// Whether an environment variable is a configuration override (its name starts with `SMPPGW__`,
/// in any case).
pub(crate) fn is_override(name: &str) -> bool {
    name.get(..ENV_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
}

/// First span offset used for overrides: past the end of the document, so never a line of it.
pub(crate) fn span_base(text: &str) -> usize {
    text.len() + 1
}

/// Which table an override writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Server,
    Item(Section, usize),
}

/// One resolved override: where it goes and the value to put there.
struct Resolved<'a> {
    target: Target,
    field: &'static Field,
    value: Spanned<DeValue<'a>>,
    span: usize,
}

/// Applies every override in `env` (sorted by name, so the outcome does not depend on the order of
/// the process environment) to `doc`, collecting a problem for each that names no setting or
/// carries a value of the wrong type. Items are looked up by their names in the file as written.
pub(crate) fn apply<'a>(
    doc: &mut Spanned<DeTable<'a>>,
    env: &'a [(String, String)],
    base: usize,
    out: &mut Vec<Problem>,
) {
    let mut resolved = Vec::new();
    // Each setting (item and field, as resolved) and the variable that set it first.
    let mut seen: std::collections::HashMap<(Target, &str), &str> = std::collections::HashMap::new();
    for (i, (name, value)) in env.iter().enumerate() {
        let span = base + i;
        match resolve(doc.get_ref(), name, value, span) {
            Ok(r) => match seen.entry((r.target, r.field.name)) {
                // Two spellings of one setting (names ignore case, and a `_` matches an item's
                // `-`): which one wins would be an accident of their order, and the loser's value
                // (out of range, say) would go unchecked.
                std::collections::hash_map::Entry::Occupied(first) => out.push(Problem {
                    span,
                    kind: ErrorKind::Environment,
                    message: format!(
                        "'{}' sets the same setting (variable names ignore case, and a '_' also matches \
                         a '-' in an item's name): set one of them",
                        first.get()
                    ),
                    fix: Fix::Nothing,
                }),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(name);
                    resolved.push(r);
                }
            },
            Err(message) => out.push(Problem {
                span,
                kind: ErrorKind::Environment,
                message,
                // The override was not applied: the file's value stands, checks go on.
                fix: Fix::Nothing,
            }),
        }
    }
    for r in resolved {
        let key_span = r.span..r.span + 1;
        let Some(table) = target_table(doc.get_mut(), r.target, key_span.clone()) else { continue };
        table.remove(r.field.name);
        table.insert(Spanned::new(key_span, Cow::Borrowed(r.field.name)), r.value);
    }
}

fn target_table<'d, 'a>(
    doc: &'d mut DeTable<'a>,
    target: Target,
    span: std::ops::Range<usize>,
) -> Option<&'d mut DeTable<'a>> {
    match target {
        Target::Server => {
            if !doc.contains_key("server") {
                doc.insert(
                    Spanned::new(span.clone(), Cow::Borrowed("server")),
                    Spanned::new(span, DeValue::Table(DeTable::new())),
                );
            }
            match doc.get_mut("server").map(|v| v.get_mut()) {
                Some(DeValue::Table(t)) => Some(t),
                _ => None,
            }
        }
        Target::Item(section, index) => match doc.get_mut(section.key()).map(|v| v.get_mut()) {
            Some(DeValue::Array(items)) => match items.get_mut(index).map(|v| v.get_mut()) {
                Some(DeValue::Table(t)) => Some(t),
                _ => None,
            },
            _ => None,
        },
    }
}

fn resolve<'a>(doc: &DeTable<'_>, name: &str, value: &'a str, span: usize) -> Result<Resolved<'a>, String> {
    const FORMS: &str = "use SMPPGW__SERVER__<FIELD>, or SMPPGW__CUSTOMER__<SYSTEM_ID>__<FIELD>, \
                         SMPPGW__VENDOR__<NAME>__<FIELD>, SMPPGW__ROUTE__<NAME>__<FIELD>, \
                         SMPPGW__BRAND__<BRAND_ID>__<FIELD>, SMPPGW__CAMPAIGN__<CAMPAIGN_ID>__<FIELD>";
    let rest = name.get(ENV_PREFIX.len()..).unwrap_or_default();
    // Section first, field last, and the item name whatever lies between: an item name may itself
    // hold underscores at either end (`sim_` makes `SMPPGW__VENDOR__SIM___PASSWORD`), so the
    // middle is not split again.
    let (Some((section_part, _)), Some((before, field_part))) =
        (rest.split_once("__"), rest.rsplit_once("__"))
    else {
        return Err(format!("'{name}' names no setting; {FORMS}"));
    };
    let middle = rest.get(section_part.len() + 2..before.len());
    let Some(section) = Section::ALL.into_iter().find(|s| s.key().eq_ignore_ascii_case(section_part)) else {
        let keys: Vec<&str> = Section::ALL.iter().map(|s| s.key()).collect();
        return Err(format!(
            "unknown section '{section_part}'{}; {FORMS}",
            did_you_mean(&section_part.to_ascii_lowercase(), &keys)
        ));
    };
    let field_lower = field_part.to_ascii_lowercase();
    let Some(field) = section.field(&field_lower) else {
        let names: Vec<&str> = section.fields().iter().map(|f| f.name).collect();
        let hint = did_you_mean(&field_lower, &names);
        let known = if hint.is_empty() { format!("; the fields are: {}", names.join(", ")) } else { hint };
        return Err(format!("{} has no field '{field_lower}'{known}", section.key()));
    };
    let target = if section.is_list() {
        let Some(item_part) = middle.filter(|m| !m.is_empty()) else {
            return Err(format!(
                "'{name}' does not say which {0}: use SMPPGW__{1}__<{2}>__{3}",
                section.key(),
                section.key().to_ascii_uppercase(),
                section.item_key().to_ascii_uppercase(),
                field.name.to_ascii_uppercase()
            ));
        };
        Target::Item(section, find_item(doc, section, item_part)?)
    } else {
        if middle.is_some() {
            return Err(format!("'{name}' has too many parts: use SMPPGW__SERVER__<FIELD>"));
        }
        Target::Server
    };
    let value = convert(field, value, span)?;
    Ok(Resolved { target, field, value, span })
}

/// Whether an item's name in the file matches the name written in a variable: ignoring ASCII case,
/// and a `_` in the variable also matches `-` (which shells do not allow in variable names).
fn name_matches(in_file: &str, in_var: &str) -> bool {
    in_file.chars().count() == in_var.chars().count()
        && in_file
            .chars()
            .zip(in_var.chars())
            .all(|(f, v)| f.eq_ignore_ascii_case(&v) || (f == '-' && v == '_'))
}

/// The name of item `i` of `section` in `doc`.
fn item_name<'a>(doc: &'a DeTable<'_>, section: Section, i: usize) -> Option<&'a str> {
    let DeValue::Array(items) = doc.get(section.key())?.get_ref() else { return None };
    let DeValue::Table(table) = items.get(i)?.get_ref() else { return None };
    match table.get(section.item_key())?.get_ref() {
        DeValue::String(name) => Some(name),
        _ => None,
    }
}

fn find_item(doc: &DeTable<'_>, section: Section, wanted: &str) -> Result<usize, String> {
    let mut names = Vec::new();
    let mut found = Vec::new();
    if let Some(DeValue::Array(items)) = doc.get(section.key()).map(|v| v.get_ref()) {
        for (i, item) in items.iter().enumerate() {
            if let DeValue::Table(table) = item.get_ref()
                && let Some(DeValue::String(name)) = table.get(section.item_key()).map(|v| v.get_ref())
            {
                if name_matches(name, wanted) {
                    found.push(i);
                }
                names.push(name.to_string());
            }
        }
    }
    // Several match once '-' and '_' are taken alike (`acme-eu` and `acme_eu`): the one spelt
    // as the variable spells it is meant.
    if found.len() > 1 {
        let exact: Vec<usize> = found
            .iter()
            .copied()
            .filter(|&i| item_name(doc, section, i).is_some_and(|n| n.eq_ignore_ascii_case(wanted)))
            .collect();
        if let [index] = exact.as_slice() {
            return Ok(*index);
        }
    }
    match found.as_slice() {
        [index] => Ok(*index),
        [] if names.is_empty() => Err(format!(
            "there is no {0} named '{wanted}': the file defines no [[{0}]] (overrides change items, \
             they do not add them)",
            section.key()
        )),
        [] => Err(format!(
            "there is no {} named '{wanted}' (names ignore case); defined: {}",
            section.key(),
            names.join(", ")
        )),
        _ => Err(format!(
            "'{wanted}' matches several {}s when case and '-'/'_' are ignored; rename them apart",
            section.key()
        )),
    }
}

fn convert<'a>(field: &Field, value: &'a str, span: usize) -> Result<Spanned<DeValue<'a>>, String> {
    let whole = span..span + 1;
    let converted = match field.kind {
        Kind::Str | Kind::Choice(_) | Kind::Addr => DeValue::String(Cow::Borrowed(value)),
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" => DeValue::Boolean(true),
            "false" => DeValue::Boolean(false),
            _ => return Err(format!("{} expects true or false, not '{value}'", field.name)),
        },
        Kind::Int { .. } => match DeValue::parse(value.trim()).map(Spanned::into_inner) {
            Ok(int @ DeValue::Integer(_)) => int,
            _ => return Err(format!("{} expects a whole number, not '{value}'", field.name)),
        },
        kind if kind.is_list() => {
            let trimmed = value.trim();
            if trimmed.starts_with('[') {
                match DeValue::parse(trimmed).map(Spanned::into_inner) {
                    Ok(array @ DeValue::Array(_)) => array,
                    Ok(other) => {
                        return Err(format!("{} expects a list, not {}", field.name, type_name(&other)));
                    }
                    Err(e) => {
                        return Err(format!(
                            "{} is not a valid TOML array: {}",
                            field.name,
                            e.message().trim_end()
                        ));
                    }
                }
            } else {
                let mut array = toml::de::DeArray::new();
                if !trimmed.is_empty() {
                    for part in value.split(',') {
                        // An empty item (a trailing or doubled comma) would be "" in a list of
                        // prefixes: every number. Only the TOML form may say that.
                        if part.trim().is_empty() {
                            return Err(format!(
                                "{} has an empty item (a trailing or doubled comma?); write a TOML array such as [\"\"] for an empty string",
                                field.name
                            ));
                        }
                        array.push(Spanned::new(whole.clone(), DeValue::String(Cow::Borrowed(part.trim()))));
                    }
                }
                DeValue::Array(array)
            }
        }
        _ => DeValue::String(Cow::Borrowed(value)),
    };
    Ok(respan(converted, &whole))
}

/// Gives a value, and everything inside it, the override's span.
fn respan<'a>(value: DeValue<'a>, span: &std::ops::Range<usize>) -> Spanned<DeValue<'a>> {
    let value = match value {
        DeValue::Array(items) => {
            let mut array = toml::de::DeArray::new();
            for item in items.iter() {
                array.push(respan(item.get_ref().clone(), span));
            }
            DeValue::Array(array)
        }
        DeValue::Table(table) => {
            let mut out = DeTable::new();
            for (key, v) in table {
                out.insert(Spanned::new(span.clone(), key.into_inner()), respan(v.into_inner(), span));
            }
            DeValue::Table(out)
        }
        other => other,
    };
    Spanned::new(span.clone(), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ignoring_case_and_dash() {
        assert!(name_matches("sim-eu", "SIM_EU"));
        assert!(name_matches("demo", "DEMO"));
        assert!(!name_matches("sim_eu", "SIM-EU"));
        assert!(!name_matches("sim", "SIM2"));
        assert!(is_override("smppgw__server__cores"));
        assert!(!is_override("SMPPGW_LOG"));
    }
}
