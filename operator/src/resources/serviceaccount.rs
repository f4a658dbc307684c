//! ServiceAccount `NAME`: the proxy never talks to the API server, so no token is mounted.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;

use super::labels::Component;
use super::{Context, meta};
use crate::crd::GoModuleProxy;

pub fn build(gmp: &GoModuleProxy, _ctx: &Context) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(gmp, gmp.name_any(), Component::Proxy, None),
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
