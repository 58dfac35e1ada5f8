//! NetworkPolicy manifests → the normalised model, with the validation the
//! API server applies: a policy the API server would reject could not exist
//! in a cluster, so it is reported and left out rather than guessed at.

use crate::cidr::Cidr;
use crate::manifest;
use crate::model::{NetworkPolicy, Peer, PolicyPort, PortRef, Protocol, Rule};
use crate::selector::{LabelSelector, Operator, Requirement};

pub fn convert_policy(
    namespace: &str,
    name: &str,
    spec: manifest::NetworkPolicySpec,
) -> Result<NetworkPolicy, String> {
    let (affects_ingress, affects_egress) = policy_types(&spec)?;
    let pod_selector = match spec.pod_selector {
        Some(sel) => convert_selector(sel).map_err(|e| format!("spec.podSelector: {e}"))?,
        // The field is required by the API; kubectl fills `{}` when absent in
        // older manifests. Treat absence as the empty selector, as apply would.
        None => LabelSelector::default(),
    };
    let ingress = convert_rules(spec.ingress.unwrap_or_default(), "ingress", |r| r.from)?;
    let egress = convert_rules(spec.egress.unwrap_or_default(), "egress", |r| r.to)?;
    Ok(NetworkPolicy {
        namespace: namespace.to_string(),
        name: name.to_string(),
        annotations: Default::default(),
        pod_selector,
        affects_ingress,
        affects_egress,
        ingress,
        egress,
        source: None,
    })
}

/// Defaulting from `SetDefaults_NetworkPolicySpec` (k8s.io/kubernetes,
/// pkg/apis/networking/v1/defaults.go): when `policyTypes` is empty the
/// policy is Ingress, and also Egress when `egress` has at least one rule.
/// Note: `egress: []` therefore does NOT make a policy an egress policy.
fn policy_types(spec: &manifest::NetworkPolicySpec) -> Result<(bool, bool), String> {
    match spec.policy_types.as_deref() {
        None | Some([]) => {
            let has_egress_rules = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
            Ok((true, has_egress_rules))
        }
        Some(types) => {
            let mut ingress = false;
            let mut egress = false;
            for t in types {
                match t.as_str() {
                    "Ingress" => ingress = true,
                    "Egress" => egress = true,
                    other => {
                        return Err(format!(
                            "spec.policyTypes: unsupported value {other:?} (expected Ingress or Egress)"
                        ));
                    }
                }
            }
            Ok((ingress, egress))
        }
    }
}

fn convert_rules(
    rules: Vec<manifest::NetworkPolicyRule>,
    field: &str,
    peers_of: impl Fn(manifest::NetworkPolicyRule) -> Option<Vec<manifest::NetworkPolicyPeer>>,
) -> Result<Vec<Rule>, String> {
    let peer_field = if field == "ingress" { "from" } else { "to" };
    rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| {
            let ports = rule
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    convert_port(p).map_err(|e| format!("spec.{field}[{i}].ports[{j}]: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let peers = peers_of(rule)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(j, p)| {
                    convert_peer(p).map_err(|e| format!("spec.{field}[{i}].{peer_field}[{j}]: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Rule { peers, ports })
        })
        .collect()
}

fn convert_peer(peer: manifest::NetworkPolicyPeer) -> Result<Peer, String> {
    let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match peer.ip_block {
        Some(_) if has_selector => {
            Err("ipBlock may not be combined with podSelector or namespaceSelector".into())
        }
        Some(block) => convert_ip_block(block),
        None if !has_selector => {
            Err("a peer must set podSelector, namespaceSelector or ipBlock".into())
        }
        None => Ok(Peer::Pods {
            namespace_selector: peer
                .namespace_selector
                .map(convert_selector)
                .transpose()
                .map_err(|e| format!("namespaceSelector: {e}"))?,
            pod_selector: peer
                .pod_selector
                .map(convert_selector)
                .transpose()
                .map_err(|e| format!("podSelector: {e}"))?,
        }),
    }
}

/// `except` entries must be strict subsets of `cidr`, of the same family
/// (ValidateIPBlock in k8s.io/kubernetes pkg/apis/networking/validation).
fn convert_ip_block(block: manifest::IpBlock) -> Result<Peer, String> {
    let cidr: Cidr = block
        .cidr
        .parse()
        .map_err(|e| format!("ipBlock.cidr: {e}"))?;
    let mut except = Vec::new();
    for (i, text) in block.except.unwrap_or_default().iter().enumerate() {
        let hole: Cidr = text
            .parse()
            .map_err(|e| format!("ipBlock.except[{i}]: {e}"))?;
        let inside = cidr.range().contains_range(&hole.range()) && hole.prefix > cidr.prefix;
        if !inside {
            return Err(format!(
                "ipBlock.except[{i}]: {hole} is not a strict subset of {cidr}"
            ));
        }
        except.push(hole);
    }
    Ok(Peer::IpBlock { cidr, except })
}

fn convert_port(port: &manifest::NetworkPolicyPort) -> Result<PolicyPort, String> {
    let protocol = parse_protocol(port.protocol.as_deref())?;
    let port_ref = match &port.port {
        None => None,
        Some(manifest::IntOrString::Int(n)) => Some(PortRef::Number(port_number(*n)?)),
        Some(manifest::IntOrString::Str(s)) => match s.parse::<i64>() {
            // The API stores "80" as a string port name only if it is not
            // numeric; a numeric string is invalid as a name.
            Ok(_) => return Err(format!("port {s:?} must be an integer, not a string")),
            Err(_) => {
                validate_port_name(s)?;
                Some(PortRef::Name(s.clone()))
            }
        },
    };
    let end_port = match (port.end_port, &port_ref) {
        (None, _) => None,
        (Some(end), Some(PortRef::Number(start))) => {
            let end = port_number(end)?;
            if end < *start {
                return Err(format!("endPort {end} is less than port {start}"));
            }
            Some(end)
        }
        (Some(_), _) => return Err("endPort requires a numeric port".into()),
    };
    Ok(PolicyPort {
        protocol,
        port: port_ref,
        end_port,
    })
}

/// A port's protocol: absent means TCP (the API default).
pub fn parse_protocol(protocol: Option<&str>) -> Result<Protocol, String> {
    match protocol {
        None => Ok(Protocol::Tcp),
        Some(p) => Protocol::parse_k8s(p)
            .ok_or_else(|| format!("unsupported protocol {p:?} (expected TCP, UDP or SCTP)")),
    }
}

pub fn port_number(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {n} is out of range 1-65535"))
}

/// IANA service names, as `validation.IsValidPortName` checks them: at most
/// 15 characters of [a-z0-9-], at least one letter, no hyphen at either end
/// and no two hyphens in a row.
pub fn validate_port_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid port name"))
    }
}

pub fn convert_selector(sel: manifest::LabelSelector) -> Result<LabelSelector, String> {
    let mut match_expressions = Vec::new();
    for (i, req) in sel
        .match_expressions
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let values = req.values.unwrap_or_default();
        let operator = match req.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => return Err(format!("matchExpressions[{i}]: unknown operator {other:?}")),
        };
        let needs_values = matches!(operator, Operator::In | Operator::NotIn);
        if needs_values && values.is_empty() {
            return Err(format!(
                "matchExpressions[{i}]: operator {} requires values",
                req.operator
            ));
        }
        if !needs_values && !values.is_empty() {
            return Err(format!(
                "matchExpressions[{i}]: operator {} takes no values",
                req.operator
            ));
        }
        match_expressions.push(Requirement {
            key: req.key,
            operator,
            values,
        });
    }
    Ok(LabelSelector {
        match_labels: sel.match_labels.unwrap_or_default(),
        match_expressions,
    })
}
