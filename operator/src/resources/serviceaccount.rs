//! ServiceAccount `NAME`. Its token is not mounted by default: only a fleet with peer fill
//! talks to the API server (to read its membership), and its pods ask for the token
//! themselves (resources/deployment.rs).

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;

use super::labels::Component;
use super::{Context, meta, names};
use crate::crd::GoModuleProxy;

pub fn build(gmp: &GoModuleProxy, _ctx: &Context) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(
            gmp,
            names::service_account(&gmp.name_any()),
            Component::Proxy,
            None,
        ),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn no_token() {
        let sa = build(&minimal(), &ctx());
        assert_owned(&sa.metadata, "proxy");
        assert_eq!(sa.metadata.name.as_deref(), Some("gomod"));
        assert_eq!(sa.automount_service_account_token, Some(false));
    }
}
