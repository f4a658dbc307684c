//! A Secret the operator makes once with a generated value and then keeps: never regenerated
//! by a reconcile (a new value rolls the fleet), made anew only when its contents no longer
//! read back (someone changed it), and never taken over from another owner. The fleet's
//! operator token ([`crate::operator_token`]) and peer token ([`crate::peer_token`]) are two.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use tracing::warn;

use crate::children::{self, ChildSet};
use crate::crd::GoModuleProxy;
use crate::error::Error;

/// One kind of generated Secret.
pub struct Generated<T> {
    /// The Secret's name.
    pub name: String,
    /// What it is, for the log line when it is made anew.
    pub what: &'static str,
    /// Its value read back from the Secret's data; None: changed into something unusable.
    pub read: fn(&BTreeMap<String, Vec<u8>>) -> Option<T>,
    pub generate: fn() -> T,
    /// The Secret holding a value.
    pub secret: fn(&GoModuleProxy, &T) -> Secret,
    /// The error when a Secret of that name belongs to someone else.
    pub taken: fn(String) -> Error,
}

/// The value: the existing Secret's (kept), else a new one in a new Secret.
pub async fn ensure<T>(
    gmp: &GoModuleProxy,
    children: &mut ChildSet,
    kind: Generated<T>,
) -> Result<T, Error> {
    let name = kind.name;
    if let Some(existing) = children.get::<Secret>(&name).await? {
        let uid = gmp.uid().ok_or(Error::Missing("uid"))?;
        if !children::is_ours(&existing.metadata, &gmp.name_any(), &uid) {
            return Err((kind.taken)(name));
        }
        let data = existing
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        if let Some(value) = (kind.read)(&data) {
            children.keep::<Secret>(name);
            return Ok(value);
        }
        warn!(secret = %name, "the {} Secret was changed; making it anew", kind.what);
        children.delete_child::<Secret>(&existing.metadata).await?;
    }
    let value = (kind.generate)();
    children.create(&(kind.secret)(gmp, &value)).await?;
    Ok(value)
}
