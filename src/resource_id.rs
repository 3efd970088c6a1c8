//! Azure resource ids: checking that an input has the shape of the resource it should name
//! (`/subscriptions/{id}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}[/…]`), so a
//! wrong paste fails before any Azure call with the expected form in the message.

use std::fmt;

/// The kinds of resource the task's inputs name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    UserAssignedIdentity,
    ManagedImage,
    GalleryImage,
    GalleryImageVersion,
    Subnet,
    ResourceGroup,
}

impl Kind {
    /// `(provider namespace, type segments)`: a resource group has none.
    fn shape(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Kind::UserAssignedIdentity => {
                ("Microsoft.ManagedIdentity", &["userAssignedIdentities"])
            }
            Kind::ManagedImage => ("Microsoft.Compute", &["images"]),
            Kind::GalleryImage => ("Microsoft.Compute", &["galleries", "images"]),
            Kind::GalleryImageVersion => {
                ("Microsoft.Compute", &["galleries", "images", "versions"])
            }
            Kind::Subnet => ("Microsoft.Network", &["virtualNetworks", "subnets"]),
            Kind::ResourceGroup => ("", &[]),
        }
    }

    /// The expected form, for error messages.
    pub fn example(self) -> String {
        let base = "/subscriptions/<subscription id>/resourceGroups/<group>";
        let (namespace, types) = self.shape();
        if types.is_empty() {
            return base.to_owned();
        }
        let mut s = format!("{base}/providers/{namespace}");
        for t in types {
            s.push_str(&format!("/{t}/<{}>", singular(t)));
        }
        s
    }
}

fn singular(t: &str) -> &str {
    match t {
        "userAssignedIdentities" => "identity",
        "images" => "image",
        "galleries" => "gallery",
        "versions" => "version",
        "virtualNetworks" => "vnet",
        "subnets" => "subnet",
        other => other,
    }
}

/// A parsed resource id of a known kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceId {
    pub subscription: String,
    pub resource_group: String,
    /// The names after each type segment (`[gallery, image]` for a gallery image).
    pub names: Vec<String>,
    raw: String,
}

impl ResourceId {
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The last name: the resource's own.
    pub fn name(&self) -> &str {
        self.names
            .last()
            .map(String::as_str)
            .unwrap_or(&self.resource_group)
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// Why an id does not fit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected a resource id of the form {expected}, got '{got}'")]
pub struct ShapeError {
    pub expected: String,
    pub got: String,
}

/// Parses `value` as a resource id of `kind`. Segment keywords compare case-insensitively, as
/// ARM does; names must be non-empty and free of spaces.
pub fn parse(kind: Kind, value: &str) -> Result<ResourceId, ShapeError> {
    let raw = value.trim().trim_end_matches('/');
    let fail = || ShapeError {
        expected: kind.example(),
        got: value.trim().to_owned(),
    };
    let segments: Vec<&str> = raw.strip_prefix('/').ok_or_else(fail)?.split('/').collect();
    let name_ok = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    let (namespace, types) = kind.shape();
    let expected_len = if types.is_empty() {
        4
    } else {
        6 + 2 * types.len()
    };
    if segments.len() != expected_len
        || !segments[0].eq_ignore_ascii_case("subscriptions")
        || !segments[2].eq_ignore_ascii_case("resourceGroups")
        || !name_ok(segments[1])
        || !name_ok(segments[3])
    {
        return Err(fail());
    }
    let mut names = Vec::new();
    if !types.is_empty() {
        if !segments[4].eq_ignore_ascii_case("providers")
            || !segments[5].eq_ignore_ascii_case(namespace)
        {
            return Err(fail());
        }
        for (i, t) in types.iter().enumerate() {
            let (key, name) = (segments[6 + 2 * i], segments[7 + 2 * i]);
            if !key.eq_ignore_ascii_case(t) || !name_ok(name) {
                return Err(fail());
            }
            names.push(name.to_owned());
        }
    }
    Ok(ResourceId {
        subscription: segments[1].to_owned(),
        resource_group: segments[3].to_owned(),
        names,
        raw: raw.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "/subscriptions/0e5c4a1d-7e57-4a1b-9000-000000000002/resourceGroups/rg";

    #[test]
    fn accepts_each_kind() {
        let id = parse(
            Kind::UserAssignedIdentity,
            &format!("{SUB}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib"),
        )
        .unwrap();
        assert_eq!(id.name(), "aib");
        assert_eq!(id.resource_group, "rg");
        let id = parse(
            Kind::GalleryImageVersion,
            &format!("{SUB}/providers/microsoft.compute/Galleries/g/images/i/versions/1.0.0/"),
        )
        .unwrap();
        assert_eq!(id.names, ["g", "i", "1.0.0"]);
        assert!(!id.as_str().ends_with('/'));
        parse(
            Kind::ManagedImage,
            &format!("{SUB}/providers/Microsoft.Compute/images/img"),
        )
        .unwrap();
        parse(
            Kind::GalleryImage,
            &format!("{SUB}/providers/Microsoft.Compute/galleries/g/images/i"),
        )
        .unwrap();
        parse(
            Kind::Subnet,
            &format!("{SUB}/providers/Microsoft.Network/virtualNetworks/v/subnets/s"),
        )
        .unwrap();
        let rg = parse(Kind::ResourceGroup, SUB).unwrap();
        assert_eq!(rg.name(), "rg");
    }

    #[test]
    fn refuses_other_shapes_with_the_expected_form() {
        for (kind, value) in [
            (Kind::ManagedImage, "myimage"),
            (
                Kind::ManagedImage,
                &format!("{SUB}/providers/Microsoft.Compute/galleries/g/images/i") as &str,
            ),
            (
                Kind::GalleryImage,
                &format!("{SUB}/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0"),
            ),
            (
                Kind::UserAssignedIdentity,
                &format!("{SUB}/providers/Microsoft.Compute/images/x"),
            ),
            (
                Kind::Subnet,
                &format!("{SUB}/providers/Microsoft.Network/virtualNetworks/v"),
            ),
            (Kind::ResourceGroup, "/subscriptions/s/resourceGroups/"),
            (
                Kind::ManagedImage,
                &format!("{SUB}/providers/Microsoft.Compute/images/my image"),
            ),
        ] {
            let err = parse(kind, value).unwrap_err();
            assert_eq!(err.expected, kind.example(), "{value}");
        }
        assert_eq!(
            Kind::GalleryImage.example(),
            "/subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.Compute/galleries/<gallery>/images/<image>"
        );
    }
}
