//! The read-only ARM endpoints a build's preflight reads (providers, resource groups and their
//! resources, identities, role assignments and definitions, marketplace images and terms,
//! managed and gallery images, VM sizes, networks, storage network rules), the per-request
//! latency, and the template PUT refusals for staging groups and subnets.

mod common;

use std::time::{Duration, Instant};

use aib_emulator::{
    Config, defaults,
    scenario::{
        GroupResourceConfig, MarketplaceTermsConfig, RESTRICTED_VM_SIZE, StorageNetworkConfig,
        roles,
    },
};
use common::{Env, fast_config, template_body};
use reqwest::Method;
use serde_json::{Value, json};

fn sub() -> String {
    format!("subscriptions/{}", defaults::SUBSCRIPTION_ID)
}

fn rg() -> String {
    format!("{}/resourceGroups/{}", sub(), defaults::RESOURCE_GROUP)
}

async fn get(env: &Env, path: &str) -> (u16, Value) {
    let (status, _, body) = env.arm(Method::GET, path, None).await;
    (status, body)
}

#[tokio::test]
async fn resource_providers_and_their_registration_state() {
    let mut config = Config {
        unregistered_providers: vec!["Microsoft.Compute".into()],
        ..Config::default()
    };
    config.scenario.registering_providers = vec!["Microsoft.ContainerInstance".into()];
    let env = Env::start(config).await;

    let (status, p) = get(
        &env,
        &format!("{}/providers/Microsoft.VirtualMachineImages", sub()),
    )
    .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["namespace"], "Microsoft.VirtualMachineImages");
    assert_eq!(p["registrationState"], "Registered");
    assert_eq!(
        p["id"],
        format!("/{}/providers/Microsoft.VirtualMachineImages", sub())
    );
    assert!(
        p["resourceTypes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["resourceType"] == "imageTemplates")
    );

    // The provider resource of an unregistered namespace answers; its resource types do not.
    let (status, p) = get(&env, &format!("{}/providers/microsoft.compute", sub())).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["registrationState"], "NotRegistered");
    let (status, e) = get(&env, &format!("{}/providers/Microsoft.Compute/skus", sub())).await;
    assert_eq!(status, 409);
    assert_eq!(e["error"]["code"], "MissingSubscriptionRegistration");

    let (_, p) = get(
        &env,
        &format!("{}/providers/Microsoft.ContainerInstance", sub()),
    )
    .await;
    assert_eq!(p["registrationState"], "Registering");

    let (status, list) = get(&env, &format!("{}/providers", sub())).await;
    assert_eq!(status, 200);
    let states: Vec<(String, String)> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["namespace"].as_str().unwrap().into(),
                p["registrationState"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(states.contains(&("Microsoft.Compute".into(), "NotRegistered".into())));
    assert!(states.contains(&("Microsoft.Storage".into(), "Registered".into())));

    let (status, e) = get(&env, &format!("{}/providers/Microsoft.Nope", sub())).await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "InvalidResourceNamespace");
}

#[tokio::test]
async fn resource_groups_and_what_they_hold() {
    let mut config = Config::default();
    config
        .resource_groups
        .push(aib_emulator::config::ResourceGroupConfig {
            name: "rg-staging-used".into(),
            ..Default::default()
        });
    config.scenario.group_resources.push(GroupResourceConfig {
        resource_group: "rg-staging-used".into(),
        ..Default::default()
    });
    let env = Env::start(config).await;

    let (status, g) = get(&env, &rg()).await;
    assert_eq!(status, 200);
    assert_eq!(g["location"], defaults::LOCATION);
    assert_eq!(g["properties"]["provisioningState"], "Succeeded");
    let (status, e) = get(&env, &format!("{}/resourceGroups/nope", sub())).await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "ResourceGroupNotFound");

    let (_, r) = get(
        &env,
        &format!("{}/resourceGroups/rg-staging-used/resources", sub()),
    )
    .await;
    assert_eq!(r["value"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["value"][0]["type"], "Microsoft.Compute/disks");
    assert_eq!(r["value"][0]["name"], "leftover-disk");

    let (_, r) = get(&env, &format!("{}/resources", rg())).await;
    let types: Vec<&str> = r["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["type"].as_str().unwrap())
        .collect();
    for t in [
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Compute/images",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
}

#[tokio::test]
async fn user_assigned_identities() {
    let env = Env::start(Config::default()).await;
    let (status, mi) = get(&env, defaults::MANAGED_IDENTITY_RESOURCE_ID).await;
    assert_eq!(status, 200, "{mi}");
    assert_eq!(
        mi["properties"]["principalId"],
        defaults::MANAGED_IDENTITY_OBJECT_ID
    );
    assert_eq!(
        mi["properties"]["clientId"],
        defaults::MANAGED_IDENTITY_CLIENT_ID
    );
    assert_eq!(mi["properties"]["tenantId"], defaults::TENANT_ID);
    assert_eq!(mi["location"], defaults::LOCATION);

    let path = format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/build-vm",
        rg()
    );
    let (status, b) = get(&env, &path).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["name"], "build-vm");
    assert!(b["properties"]["principalId"].is_string());

    let (status, e) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nope",
            rg()
        ),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "ResourceNotFound");
}

#[tokio::test]
async fn role_assignments_at_every_scope_and_role_definitions() {
    let env = Env::start(Config::default()).await;
    let mi = defaults::MANAGED_IDENTITY_OBJECT_ID;

    // Subscription scope, the identity's assignments at or below it.
    let (status, l) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?$filter=assignedTo('{mi}')",
            sub()
        ),
    )
    .await;
    assert_eq!(status, 200, "{l}");
    let value = l["value"].as_array().unwrap();
    assert_eq!(value.len(), 1, "{l}");
    let a = &value[0];
    assert_eq!(a["type"], "Microsoft.Authorization/roleAssignments");
    assert_eq!(a["properties"]["principalId"], mi);
    assert_eq!(a["properties"]["principalType"], "ServicePrincipal");
    assert_eq!(a["properties"]["scope"], format!("/{}", rg()));
    assert_eq!(
        a["properties"]["roleDefinitionId"],
        format!(
            "/{}/providers/Microsoft.Authorization/roleDefinitions/{}",
            sub(),
            roles::CONTRIBUTOR
        )
    );
    assert!(a["id"].as_str().unwrap().starts_with(&format!(
        "/{}/providers/Microsoft.Authorization/roleAssignments/",
        rg()
    )));

    // A resource under the group: the group's assignment applies (above); so does the
    // subscription-wide one of the service connection.
    let account = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{}",
        rg(),
        defaults::STORAGE_ACCOUNT
    );
    let (status, l) = get(
        &env,
        &format!("{account}/providers/Microsoft.Authorization/roleAssignments"),
    )
    .await;
    assert_eq!(status, 200, "{l}");
    let principals: Vec<&str> = l["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["properties"]["principalId"].as_str().unwrap())
        .collect();
    assert!(principals.contains(&mi) && principals.contains(&defaults::CLIENT_OBJECT_ID));
    let (_, l) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId eq '{mi}'",
            rg()
        ),
    )
    .await;
    assert_eq!(l["value"].as_array().unwrap().len(), 1);
    let (_, l) = get(
        &env,
        &format!(
            "{}/resourceGroups/other/providers/Microsoft.Authorization/roleAssignments",
            sub()
        ),
    )
    .await;
    assert_eq!(l["error"]["code"], "ResourceGroupNotFound");

    for (id, name, action) in [
        (roles::CONTRIBUTOR, "Contributor", "*"),
        (roles::READER, "Reader", "*/read"),
        (
            roles::MANAGED_IDENTITY_OPERATOR,
            "Managed Identity Operator",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
        ),
        (
            roles::STORAGE_BLOB_DATA_READER,
            "Storage Blob Data Reader",
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
        ),
    ] {
        let (status, d) = get(
            &env,
            &format!(
                "{}/providers/Microsoft.Authorization/roleDefinitions/{id}",
                sub()
            ),
        )
        .await;
        assert_eq!(status, 200, "{d}");
        assert_eq!(d["properties"]["roleName"], name);
        assert_eq!(d["properties"]["type"], "BuiltInRole");
        assert_eq!(d["properties"]["assignableScopes"], json!(["/"]));
        let actions = d["properties"]["permissions"][0]["actions"]
            .as_array()
            .unwrap();
        assert!(actions.iter().any(|a| a == action), "{d}");
        assert!(d["properties"]["permissions"][0]["notActions"].is_array());
    }
    let (status, e) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/00000000-0000-0000-0000-000000000000",
            rg()
        ),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "RoleDefinitionDoesNotExist");
}

#[tokio::test]
async fn reading_role_assignments_can_be_forbidden() {
    let mut config = Config::default();
    config.scenario.role_assignments_forbidden = true;
    let env = Env::start(config).await;
    let (status, e) = get(
        &env,
        &format!("{}/providers/Microsoft.Authorization/roleAssignments", rg()),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(e["error"]["code"], "AuthorizationFailed");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!(
        "The client '{0}' with object id '{0}' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/read' over scope '/{1}' or the scope is invalid.",
        defaults::CLIENT_OBJECT_ID,
        rg()
    )), "{message}");
}

#[tokio::test]
async fn marketplace_images_and_their_terms() {
    let mut config = Config::default();
    config.platform_images.push(
        aib_emulator::config::PlatformImageConfig::new(
            "center-for-internet-security-inc",
            "cis-ubuntu-linux-2204-l1",
            "cis-ubuntu2204-l1",
            &["1.0.12"],
            "Linux",
        )
        .with_plan(
            "cis-ubuntu2204-l1",
            "cis-ubuntu-linux-2204-l1",
            "center-for-internet-security-inc",
        ),
    );
    config
        .scenario
        .marketplace_terms
        .push(MarketplaceTermsConfig {
            publisher: "center-for-internet-security-inc".into(),
            offer: "cis-ubuntu-linux-2204-l1".into(),
            plan: "cis-ubuntu2204-l1".into(),
            accepted: false,
        });
    let env = Env::start(config).await;
    let (status, v) = get(&env, &format!("{}/providers/Microsoft.Compute/locations/westus2/publishers/center-for-internet-security-inc/artifacttypes/vmimage/offers/cis-ubuntu-linux-2204-l1/skus/cis-ubuntu2204-l1/versions/1.0.12", sub())).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["properties"]["hyperVGeneration"], "V2");
    assert_eq!(v["properties"]["architecture"], "x64");
    assert_eq!(v["properties"]["plan"]["name"], "cis-ubuntu2204-l1");
    assert!(
        v["properties"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "SecurityType")
    );

    let terms = |p: &str, o: &str, plan: &str| {
        format!(
            "{}/providers/Microsoft.MarketplaceOrdering/offerTypes/virtualmachine/publishers/{p}/offers/{o}/plans/{plan}/agreements/current",
            sub()
        )
    };
    let (status, t) = get(
        &env,
        &terms(
            "center-for-internet-security-inc",
            "cis-ubuntu-linux-2204-l1",
            "cis-ubuntu2204-l1",
        ),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["properties"]["accepted"], false);
    assert_eq!(
        t["properties"]["publisher"],
        "center-for-internet-security-inc"
    );
    assert_eq!(t["properties"]["product"], "cis-ubuntu-linux-2204-l1");
    assert_eq!(t["properties"]["plan"], "cis-ubuntu2204-l1");
    assert_eq!(t["type"], "Microsoft.MarketplaceOrdering/offertypes");
    let (_, t) = get(&env, &terms("other", "offer", "plan")).await;
    assert_eq!(t["properties"]["accepted"], true, "accepted by default");
}

#[tokio::test]
async fn managed_and_gallery_source_images() {
    let env = Env::start(Config::default()).await;
    let (status, i) = get(
        &env,
        &format!("{}/providers/Microsoft.Compute/images/golden-base", rg()),
    )
    .await;
    assert_eq!(status, 200, "{i}");
    assert_eq!(i["location"], defaults::LOCATION);
    assert_eq!(i["properties"]["hyperVGeneration"], "V2");
    assert_eq!(
        i["properties"]["storageProfile"]["osDisk"]["osType"],
        "Linux"
    );
    assert_eq!(
        i["properties"]["storageProfile"]["osDisk"]["osState"],
        "Generalized"
    );
    let (status, e) = get(
        &env,
        &format!("{}/providers/Microsoft.Compute/images/nope", rg()),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "ResourceNotFound");

    let (status, v) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Compute/galleries/gallery1/images/base/versions/1.0.3",
            rg()
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let regions = &v["properties"]["publishingProfile"]["targetRegions"];
    assert_eq!(regions[0]["name"], defaults::LOCATION);
    assert_eq!(regions[0]["regionalReplicaCount"], 1);
    let (_, d) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Compute/galleries/gallery1/images/base",
            rg()
        ),
    )
    .await;
    assert_eq!(d["properties"]["osType"], "Linux");
    assert_eq!(d["properties"]["hyperVGeneration"], "V2");
    assert_eq!(d["properties"]["features"][0]["name"], "SecurityType");
}

#[tokio::test]
async fn vm_sizes_of_a_location_with_their_restrictions() {
    let env = Env::start(Config::default()).await;
    let (status, l) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Compute/skus?$filter=location eq 'westus2'",
            sub()
        ),
    )
    .await;
    assert_eq!(status, 200, "{l}");
    let skus = l["value"].as_array().unwrap();
    let find = |n: &str| skus.iter().find(|k| k["name"] == n).unwrap().clone();
    let d2 = find("Standard_D2s_v3");
    assert_eq!(d2["resourceType"], "virtualMachines");
    assert_eq!(d2["tier"], "Standard");
    assert_eq!(d2["size"], "D2s_v3");
    assert_eq!(d2["family"], "standardDSv3Family");
    assert_eq!(d2["locations"], json!(["westus2"]));
    assert_eq!(d2["locationInfo"][0]["location"], "westus2");
    assert_eq!(d2["restrictions"], json!([]));
    let cap = |k: &Value, n: &str| {
        k["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .map(|c| c["value"].as_str().unwrap().to_string())
    };
    assert_eq!(cap(&d2, "HyperVGenerations").as_deref(), Some("V1,V2"));
    assert_eq!(cap(&d2, "CpuArchitectureType").as_deref(), Some("x64"));
    assert_eq!(cap(&d2, "TrustedLaunchDisabled"), None);
    assert_eq!(
        cap(&find("Standard_D2ps_v5"), "CpuArchitectureType").as_deref(),
        Some("Arm64")
    );
    assert_eq!(
        cap(&find("Standard_A2_v2"), "TrustedLaunchDisabled").as_deref(),
        Some("True")
    );
    let m = find(RESTRICTED_VM_SIZE);
    assert_eq!(
        m["restrictions"],
        json!([{"type": "Location", "values": ["westus2"], "restrictionInfo": {"locations": ["westus2"]}, "reasonCode": "NotAvailableForSubscription"}])
    );
    let (_, l) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Compute/skus?$filter=location eq 'eastus'",
            sub()
        ),
    )
    .await;
    assert!(
        l["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["restrictions"] == json!([]))
    );
}

#[tokio::test]
async fn virtual_networks_and_subnets() {
    let env = Env::start(Config::default()).await;
    let vnet = format!("{}/providers/Microsoft.Network/virtualNetworks/vnet", rg());
    let (status, v) = get(&env, &vnet).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["location"], defaults::LOCATION);
    assert_eq!(v["properties"]["subnets"].as_array().unwrap().len(), 3);

    let (status, b) = get(&env, &format!("{vnet}/subnets/build")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["id"], format!("/{vnet}/subnets/build"));
    assert_eq!(
        b["properties"]["privateLinkServiceNetworkPolicies"],
        "Disabled"
    );
    assert!(
        b["properties"]["networkSecurityGroup"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/networkSecurityGroups/vnet-build-nsg")
    );
    let (_, a) = get(&env, &format!("{vnet}/subnets/aci")).await;
    assert_eq!(
        a["properties"]["delegations"][0]["properties"]["serviceName"],
        "Microsoft.ContainerInstance/containerGroups"
    );
    let (_, p) = get(&env, &format!("{vnet}/subnets/build-policies-on")).await;
    assert_eq!(
        p["properties"]["privateLinkServiceNetworkPolicies"],
        "Enabled"
    );
    let (status, e) = get(&env, &format!("{vnet}/subnets/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "NotFound");
    let (status, e) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Network/virtualNetworks/nope/subnets/build",
            rg()
        ),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "ResourceNotFound");
    let (_, east) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Network/virtualNetworks/vnet-eastus",
            rg()
        ),
    )
    .await;
    assert_eq!(east["location"], "eastus");
}

#[tokio::test]
async fn storage_account_network_rules() {
    let subnet = format!(
        "/{}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/build",
        rg()
    );
    let mut config = Config::default();
    config.scenario.storage_network.push(StorageNetworkConfig {
        account: defaults::STORAGE_ACCOUNT.into(),
        default_action: "Deny".into(),
        bypass: "None".into(),
        virtual_network_rules: vec![subnet.clone()],
        ip_rules: vec!["203.0.113.0/24".into()],
        public_network_access: "Enabled".into(),
    });
    let env = Env::start(config).await;
    let path = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{}",
        rg(),
        defaults::STORAGE_ACCOUNT
    );
    let (status, a) = get(&env, &path).await;
    assert_eq!(status, 200, "{a}");
    let acls = &a["properties"]["networkAcls"];
    assert_eq!(acls["defaultAction"], "Deny");
    assert_eq!(acls["bypass"], "None");
    assert_eq!(acls["virtualNetworkRules"][0]["id"], subnet);
    assert_eq!(acls["virtualNetworkRules"][0]["action"], "Allow");
    assert_eq!(acls["ipRules"][0]["value"], "203.0.113.0/24");
    assert_eq!(a["properties"]["publicNetworkAccess"], "Enabled");
    assert_eq!(a["properties"]["allowSharedKeyAccess"], true);
    // Not configured: open to all networks.
    let (_, other) = get(
        &env,
        &format!(
            "{}/providers/Microsoft.Storage/storageAccounts/{}",
            rg(),
            defaults::NO_KEY_STORAGE_ACCOUNT
        ),
    )
    .await;
    assert_eq!(other["properties"]["networkAcls"]["defaultAction"], "Allow");
    assert_eq!(other["properties"]["allowSharedKeyAccess"], false);
}

#[tokio::test]
async fn every_arm_request_waits_the_configured_latency() {
    let mut config = Config::default();
    config.scenario.latency_ms = 100;
    let env = Env::start(config).await;
    let started = Instant::now();
    for _ in 0..3 {
        let (status, _) = get(&env, &rg()).await;
        assert_eq!(status, 200);
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn template_puts_that_break_staging_group_or_subnet_rules_are_refused() {
    let mut config = fast_config();
    for (name, location) in [
        ("rg-staging-busy", defaults::LOCATION),
        ("rg-staging-east", "eastus"),
        ("rg-staging-empty", defaults::LOCATION),
    ] {
        config
            .resource_groups
            .push(aib_emulator::config::ResourceGroupConfig {
                name: name.into(),
                location: location.into(),
                ..Default::default()
            });
    }
    config.scenario.group_resources.push(GroupResourceConfig {
        resource_group: "rg-staging-busy".into(),
        ..Default::default()
    });
    let env = Env::start(config).await;
    let staging = |g: &str| format!("/{}/resourceGroups/{g}", sub());
    let subnet = |v: &str, n: &str| {
        format!(
            "/{}/providers/Microsoft.Network/virtualNetworks/{v}/subnets/{n}",
            rg()
        )
    };
    let put = |name: &str, body: Value| {
        let env = &env;
        let name = name.to_string();
        async move {
            env.arm(Method::PUT, &env.template_path(&name), Some(&body))
                .await
        }
    };
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut b = template_body(json!([]), json!([]));
        edit(&mut b);
        b
    };

    for (name, body, message) in [
        (
            "t_busy",
            with(&|b| b["properties"]["stagingResourceGroup"] = json!(staging("rg-staging-busy"))),
            "must be empty",
        ),
        (
            "t_east",
            with(&|b| b["properties"]["stagingResourceGroup"] = json!(staging("rg-staging-east"))),
            "same region as the image template",
        ),
        (
            "t_policies",
            with(&|b| {
                b["properties"]["vmProfile"]["vnetConfig"] =
                    json!({"subnetId": subnet("vnet", "build-policies-on")})
            }),
            "privateLinkServiceNetworkPolicies is 'Enabled'",
        ),
        (
            "t_region",
            with(&|b| {
                b["properties"]["vmProfile"]["vnetConfig"] =
                    json!({"subnetId": subnet("vnet-eastus", "build")})
            }),
            "same region as the image template",
        ),
    ] {
        let (status, _, e) = put(name, body).await;
        assert_eq!(status, 400, "{name}: {e}");
        assert_eq!(e["error"]["code"], "ValidationFailed", "{name}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(message),
            "{name}: {e}"
        );
    }

    // An empty group in the template's region, and the well-configured subnets, are fine; the
    // group is then taken.
    let ok_body = with(&|b| {
        b["properties"]["stagingResourceGroup"] = json!(staging("rg-staging-empty"));
        b["properties"]["vmProfile"]["vnetConfig"] = json!({
            "subnetId": subnet("vnet", "build"),
            "containerInstanceSubnetId": subnet("vnet", "aci"),
        });
    });
    env.create_template("t_ok", &ok_body).await;
    let (status, _, e) = put("t_second", ok_body.clone()).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be associated with another image template"),
        "{e}"
    );
}
