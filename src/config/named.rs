//! Enums written as names in config files ("rtu_over_tcp", "CDAB"): one table per enum gives
//! both directions, and an unknown name is reported with the list of the allowed ones.

/// The name of a value in its table.
pub fn name_of<T: PartialEq>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(name, _)| *name)
        .unwrap_or("?")
}

/// The value of a name, or an error listing the allowed names.
pub fn by_name<T: Copy>(table: &[(&'static str, T)], name: &str) -> Result<T, String> {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = table.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            format!(
                "{name:?} is not allowed (expected one of {})",
                names.join(", ")
            )
        })
}

/// Implements `Deserialize` for an enum from its name table.
macro_rules! deserialize_by_name {
    ($enum:ty, $table:expr) => {
        impl<'de> serde::Deserialize<'de> for $enum {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = <String as serde::Deserialize>::deserialize(deserializer)?;
                $crate::config::named::by_name($table, &name).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use deserialize_by_name;
