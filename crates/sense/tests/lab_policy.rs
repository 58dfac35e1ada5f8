//! The lab itself, end to end: pods as namespaces with kubelet-named
//! cgroups and an nftables ingress policy per pod. Connections the policy
//! allows go through and others are dropped; a process started in a pod is
//! attributed to that pod by its cgroup (path and id) and network namespace.
//! Root only (see `lab/mod.rs`).

mod lab;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use lab::{Lab, PodSpec, client_and_db, skip_or_fail};
use palisade_sense::{CgroupIndex, Lookup, Owner, Qos, Runtime, classify};

fn shop() -> Vec<PodSpec> {
    client_and_db(&[5432])
}

#[test]
fn lab_enforces_its_policy_and_attributes_processes_to_pods() {
    let mut lab = match Lab::start(&shop()) {
        Ok(lab) => lab,
        Err(why) => return skip_or_fail("lab_enforces_its_policy", &why),
    };
    let server = lab.serve_tcp("db", 5432).expect("db serves 5432");
    lab.serve_tcp("db", 6379).expect("db serves 6379");
    let short = Duration::from_millis(700);
    assert!(
        lab.connect_tcp("client", "db", 5432, short),
        "allowed port blocked"
    );
    assert!(
        !lab.connect_tcp("client", "db", 6379, short),
        "denied port reached"
    );
    // Ingress to the client is denied entirely.
    lab.serve_tcp("client", 8080).expect("client serves 8080");
    assert!(!lab.connect_tcp("db", "client", 8080, short));

    // The server process sits in db's container cgroup...
    let db = lab.pod("db");
    let path = Lab::cgroup_of(server).expect("server's cgroup");
    let expected = Owner::Container {
        pod_uid: db.uid.clone(),
        container_id: db.container_id.clone(),
        runtime: Runtime::Unnamed,
        qos: Qos::BestEffort,
    };
    assert_eq!(classify(&path), expected, "{path}");
    // ... whose id (the directory's inode) the index resolves to db ...
    let id = std::fs::metadata(&db.cgroup).unwrap().ino();
    let mut index = CgroupIndex::new(lab.cgroup_root(), Duration::ZERO);
    match index.lookup(id) {
        Lookup::Found { owner, .. } => assert_eq!(owner, expected),
        Lookup::Missing => panic!("db's cgroup id not indexed"),
    }
    // ... and in db's network namespace.
    let netns = std::fs::metadata(format!("/run/netns/{}", db.netns))
        .unwrap()
        .ino();
    let process_netns = std::fs::metadata(format!("/proc/{server}/ns/net"))
        .unwrap()
        .ino();
    assert_eq!(netns, process_netns);
}
