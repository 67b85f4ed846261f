//! The files an operator deploys smppgw with (deploy/), checked offline: the Kubernetes manifests
//! parse and hold what keeps a gateway healthy (probes, drain, whole CPUs, unique node ids, no
//! root), the systemd unit and sysctls carry the limits that matter, the Dockerfile has its
//! stages, and the Grafana dashboard names only metric families that a running gateway really
//! exports, checked against a live /metrics scrape. Checks that need a tool (kubectl,
//! systemd-analyze, python3) print a note and skip that one check when the tool is missing.

// Helpers here panic with the file and value at fault, which is what a failing check should say;
// this also covers the shared tests/common helpers compiled into this crate.
#![allow(clippy::unwrap_used)]

mod common;

use common::http_get;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use smppgw_codec::CommandStatus;
use smppgw_engine::config::Config;

// ------------------------------------------------------------------------------------------------
// Reading the files.

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn k8s_dir() -> PathBuf {
    deploy_dir().join("k8s")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of `path` as JSON values; empty documents are skipped.
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let v =
            Value::deserialize(de).unwrap_or_else(|e| panic!("{} document {}: {e}", path.display(), i + 1));
        if !v.is_null() {
            docs.push(v);
        }
    }
    docs
}

/// YAML files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == "kustomization.yaml" || n == "kustomization.yml")
}

/// The Kubernetes objects that `kubectl apply -k deploy/k8s` applies (the top-level manifests, not
/// the kustomizations, components or `*.example.yaml` templates), with their file.
fn objects() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for f in yaml_files(&k8s_dir()) {
        let template = f.to_string_lossy().ends_with(".example.yaml");
        if is_kustomization(&f) || template || f.parent() != Some(k8s_dir().as_path()) {
            continue;
        }
        for d in yaml_docs(&f) {
            out.push((f.clone(), d));
        }
    }
    out
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("{pointer} is not a string in {v}"))
}

fn kind_of(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn find<'a>(objs: &'a [(PathBuf, Value)], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .map(|(_, v)| v)
        .find(|v| kind_of(v) == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name} in deploy/k8s"))
}

/// The gateway workload (a StatefulSet, or a Deployment) and its `smppgw` container.
fn gateway(objs: &[(PathBuf, Value)]) -> (&Value, &Value) {
    let workloads: Vec<&Value> =
        objs.iter().map(|(_, v)| v).filter(|v| matches!(kind_of(v), "StatefulSet" | "Deployment")).collect();
    assert_eq!(workloads.len(), 1, "exactly one gateway workload in deploy/k8s");
    let w = workloads[0];
    let c = w["spec"]["template"]["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "smppgw"))
        .expect("a container named smppgw");
    (w, c)
}

/// `matchLabels` (or a plain selector map) as pairs.
fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
        .unwrap_or_default()
}

fn selects(selector: &Value, pod_labels: &BTreeMap<String, String>) -> bool {
    let sel = labels(selector);
    !sel.is_empty() && sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
}

/// A CPU quantity in millicores: `2`, `"2"`, `"1500m"`, `"0.5"`.
fn millicores(v: &Value) -> u64 {
    let t = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => panic!("cpu quantity {v} is neither a number nor a string"),
    };
    if let Some(m) = t.strip_suffix('m') {
        return m.parse().unwrap_or_else(|_| panic!("bad cpu quantity {t}"));
    }
    let f: f64 = t.parse().unwrap_or_else(|_| panic!("bad cpu quantity {t}"));
    (f * 1000.0).round() as u64
}

/// A memory quantity in bytes: `4Gi`, `512Mi`, `1G`, `1048576`.
fn bytes(v: &Value) -> u64 {
    let t = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => panic!("memory quantity {v} is neither a number nor a string"),
    };
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, mul) in units {
        if let Some(n) = t.strip_suffix(suffix) {
            return n.parse::<u64>().unwrap_or_else(|_| panic!("bad memory quantity {t}")) * mul;
        }
    }
    t.parse().unwrap_or_else(|_| panic!("bad memory quantity {t}"))
}

/// The number of a container port, given the name or number a probe or Service uses.
fn container_port(container: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().unwrap_or_else(|| panic!("port {port} is neither a name nor a number"));
    container["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

/// The node's smppgw.toml, which kustomization.yaml's generator makes the ConfigMap
/// `smppgw-config` (checked by `the_config_map_is_generated_so_a_change_rolls_the_pods`).
fn configmap_toml() -> String {
    let path = k8s_dir().join("smppgw.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the pod's `SMPPGW__` variables evaluate to for the pod with `ordinal`: literal values,
/// the pod-index label, and the CPU limit.
fn pod_overrides(workload: &Value, container: &Value, ordinal: u64) -> Vec<(String, String)> {
    let cpu_limit = millicores(&container["resources"]["limits"]["cpu"]);
    let mut env = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = s(e, "/name");
        if !name.to_ascii_uppercase().starts_with("SMPPGW__") {
            continue;
        }
        let value = if let Some(v) = e["value"].as_str() {
            v.to_owned()
        } else if let Some(path) = e.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str) {
            assert_eq!(
                path, "metadata.labels['apps.kubernetes.io/pod-index']",
                "{name}: the only field a setting may come from is the StatefulSet pod index"
            );
            assert_eq!(kind_of(workload), "StatefulSet", "{name}: only a StatefulSet has a pod index");
            ordinal.to_string()
        } else if let Some(r) = e.pointer("/valueFrom/resourceFieldRef") {
            assert_eq!(r["resource"], "limits.cpu", "{name}: only the CPU limit is used");
            let divisor = r.get("divisor").map_or(1000, millicores);
            cpu_limit.div_ceil(divisor).to_string()
        } else {
            panic!("{name}: a setting must be a literal, the pod index or the CPU limit, not {e}")
        };
        env.push((name.to_owned(), value));
    }
    env
}

// ------------------------------------------------------------------------------------------------
// Kubernetes.

#[test]
fn every_manifest_parses_and_names_itself() {
    // Goal: `kubectl apply -k` would not stumble on a file: every YAML document under deploy/k8s
    // parses and is an object with an apiVersion, a kind and a valid name.
    let files = yaml_files(&k8s_dir());
    assert!(files.len() >= 8, "the manifests are there: {files:?}");
    let mut seen = BTreeSet::new();
    for f in &files {
        let docs = yaml_docs(f);
        assert!(!docs.is_empty(), "{} has no document", f.display());
        for d in docs {
            let api = d["apiVersion"].as_str().unwrap_or_default();
            let kind = kind_of(&d);
            assert!(
                !api.is_empty() && !kind.is_empty(),
                "{}: object without apiVersion or kind: {d}",
                f.display()
            );
            if is_kustomization(f) {
                assert!(api.starts_with("kustomize.config.k8s.io/"), "{}: {api}", f.display());
                assert!(matches!(kind, "Kustomization" | "Component"), "{}: {kind}", f.display());
                continue;
            }
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            let dns1123 = !name.is_empty()
                && name.len() <= 63
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            assert!(dns1123, "{}: {kind} name {name:?} is not a DNS-1123 label", f.display());
            assert!(seen.insert((kind.to_owned(), name.to_owned())), "{kind}/{name} defined twice");
        }
    }
}

#[test]
fn the_config_map_is_generated_so_a_change_rolls_the_pods() {
    // Goal: a change to the node's settings reaches every pod. The gateway reads smppgw.toml
    // only at start; a plain ConfigMap would change under the running pods and take effect on
    // each at its next restart. Generated, its name carries a hash of the file, which kustomize
    // writes into the StatefulSet's pod template: a change rolls the pods.
    let kustomization = yaml_docs(&k8s_dir().join("kustomization.yaml")).remove(0);
    let generators = kustomization["configMapGenerator"].as_array().expect("configMapGenerator");
    let generator =
        generators.iter().find(|g| g["name"] == "smppgw-config").expect("a generator for smppgw-config");
    let files: Vec<&str> =
        generator["files"].as_array().expect("files").iter().filter_map(Value::as_str).collect();
    assert_eq!(files, ["smppgw.toml"], "generated from smppgw.toml, under the key the pod mounts");
    assert_ne!(
        kustomization["generatorOptions"]["disableNameSuffixHash"].as_bool(),
        Some(true),
        "the hash suffix is what rolls the pods"
    );
    assert_ne!(
        generator["options"]["disableNameSuffixHash"].as_bool(),
        Some(true),
        "the hash suffix is kept"
    );
    let objs = objects();
    assert!(
        !objs.iter().any(|(_, o)| kind_of(o) == "ConfigMap" && o["metadata"]["name"] == "smppgw-config"),
        "no hand-written ConfigMap of the same name"
    );

    // The pod mounts it at the path its --config names.
    let (w, c) = gateway(&objs);
    let volumes = w["spec"]["template"]["spec"]["volumes"].as_array().expect("volumes");
    let volume = volumes
        .iter()
        .find(|v| v["configMap"]["name"] == "smppgw-config")
        .expect("a volume from the ConfigMap smppgw-config");
    let mount = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap is mounted");
    let args: Vec<&str> = c["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    let config = format!("{}/smppgw.toml", s(mount, "/mountPath"));
    assert!(args.windows(2).any(|a| a == ["--config", config.as_str()]), "--config {config} in {args:?}");
}

#[test]
fn kustomization_lists_every_manifest_but_the_secret_template() {
    // Goal: `kubectl apply -k deploy/k8s` deploys every manifest of the folder, and never the
    // Secret template with its placeholder values.
    let kustomization = yaml_docs(&k8s_dir().join("kustomization.yaml")).remove(0);
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("resource path").to_owned())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml" && !n.ends_with(".example.yaml"))
        .collect();
    assert_eq!(listed, on_disk, "kustomization.yaml resources == the manifests of deploy/k8s");
    assert!(k8s_dir().join("secret.example.yaml").exists());
    assert!(!listed.iter().any(|r| r.contains("example")), "the Secret template is never applied");

    // The image is renamed in one place.
    let objs = objects();
    let (_, c) = gateway(&objs);
    let image = s(c, "/image");
    let renamed = kustomization["images"].as_array().into_iter().flatten().any(|i| i["name"] == image);
    assert!(renamed, "kustomization.yaml images: renames {image}");

    // Each component is a kustomize Component.
    for entry in std::fs::read_dir(k8s_dir().join("components")).unwrap() {
        let dir = entry.unwrap().path();
        let k = yaml_docs(&dir.join("kustomization.yaml")).remove(0);
        assert_eq!(k["kind"], "Component", "{}", dir.display());
    }

    // With kubectl: the folder and each component build.
    if !tool_runs("kubectl", &["version", "--client"]) {
        eprintln!("note: kubectl not found; `kubectl kustomize deploy/k8s` not checked");
        return;
    }
    let built = kustomize(&k8s_dir());
    // The generated ConfigMap (its name suffixed with a hash of smppgw.toml) is checked apart.
    let generated =
        |v: &Value| kind_of(v) == "ConfigMap" && s(v, "/metadata/name").starts_with("smppgw-config-");
    let built_names: BTreeSet<(String, String)> = built
        .iter()
        .filter(|v| !generated(v))
        .map(|v| (kind_of(v).to_owned(), s(v, "/metadata/name").to_owned()))
        .collect();
    let source_names: BTreeSet<(String, String)> =
        objs.iter().map(|(_, v)| (kind_of(v).to_owned(), s(v, "/metadata/name").to_owned())).collect();
    assert_eq!(built_names, source_names, "kustomize builds exactly the listed objects");
    let config_maps: Vec<&Value> = built.iter().filter(|v| generated(v)).collect();
    assert_eq!(config_maps.len(), 1, "one generated ConfigMap");
    let config_map = config_maps[0];
    assert_eq!(s(config_map, "/data/smppgw.toml"), configmap_toml(), "holding smppgw.toml as it is");
    let name = s(config_map, "/metadata/name");
    let statefulset = built.iter().find(|v| kind_of(v) == "StatefulSet").expect("the StatefulSet");
    let mounted = statefulset["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|v| v["configMap"]["name"] == name);
    assert!(mounted, "the pod template names the generated ConfigMap {name}, so a change rolls the pods");
    for v in built.iter().filter(|v| kind_of(v) != "Namespace") {
        assert_eq!(
            v["metadata"]["namespace"], "smppgw",
            "{} is namespaced by the kustomization",
            v["metadata"]["name"]
        );
    }
    for (component, profile) in
        [("seccomp-runtime-default", "RuntimeDefault"), ("seccomp-unconfined", "Unconfined")]
    {
        let dir = std::env::temp_dir().join(format!("smppgw-deploy-{}-{component}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // kustomize takes only relative paths to other kustomizations.
        let up = "../".repeat(dir.components().count() - 1);
        let rel = |p: PathBuf| format!("{up}{}", p.display().to_string().trim_start_matches('/'));
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "resources: [{}]\ncomponents: [{}]\n",
                rel(k8s_dir()),
                rel(k8s_dir().join("components").join(component))
            ),
        )
        .unwrap();
        let out = kustomize(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let sts = out.iter().find(|v| kind_of(v) == "StatefulSet").expect("the StatefulSet");
        assert_eq!(
            sts["spec"]["template"]["spec"]["securityContext"]["seccompProfile"]["type"], profile,
            "{component}"
        );
    }
}

fn tool_runs(tool: &str, args: &[&str]) -> bool {
    Command::new(tool).args(args).output().is_ok_and(|o| o.status.success())
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(dir)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn the_gateway_pods_probe_drain_and_get_whole_cpus() {
    // Goal: a rolling update or node drain never cuts in-flight submits, a stuck pod is
    // restarted, an unready pod gets no new binds, and the pod is Guaranteed with whole CPUs.
    let objs = objects();
    let (w, c) = gateway(&objs);
    let pod = &w["spec"]["template"]["spec"];

    let http = container_port(c, &Value::from("http"));
    assert_eq!(container_port(c, &Value::from("smpp")), 2775);
    assert_eq!(http, 8080);
    assert_eq!(s(c, "/readinessProbe/httpGet/path"), "/ready");
    assert_eq!(
        container_port(c, &c["readinessProbe"]["httpGet"]["port"]),
        http,
        "readiness on the HTTP port"
    );
    assert_eq!(s(c, "/livenessProbe/httpGet/path"), "/health");
    assert_eq!(container_port(c, &c["livenessProbe"]["httpGet"]["port"]), http, "liveness on the HTTP port");
    if let Some(startup) = c.get("startupProbe") {
        assert_eq!(
            s(startup, "/httpGet/path"),
            "/health",
            "the startup probe waits for liveness, not readiness"
        );
    }

    // Drain: preStop, then SIGTERM and the gateway's grace, all inside the grace period.
    let pre_stop = prestop_sleep_secs(c);
    let default_grace_ms = u64::from(Config::embedded_default().server.shutdown_grace_ms);
    let cfg = Config::load(&configmap_toml(), "smppgw.toml", pod_overrides(w, c, 0)).unwrap();
    let grace_ms = u64::from(cfg.server.shutdown_grace_ms).max(default_grace_ms);
    let period = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    // The drain's worst case: the grace for in-flight submits, half the grace for deliveries and
    // the customers' unbind, and up to 12.5 s for vendors, hand-offs, Redis and the HTTP API.
    assert!(
        period * 1000 >= pre_stop * 1000 + grace_ms * 3 / 2 + 15_000,
        "terminationGracePeriodSeconds {period} must be at least preStop {pre_stop} s + 1.5 x shutdown_grace_ms \
         {grace_ms} + 15 s"
    );

    // Guaranteed QoS with whole CPUs: requests == limits.
    let res = &c["resources"];
    let (cpu_req, cpu_lim) = (millicores(&res["requests"]["cpu"]), millicores(&res["limits"]["cpu"]));
    assert_eq!(cpu_req, cpu_lim, "cpu requests == limits");
    assert!(cpu_lim >= 1000 && cpu_lim % 1000 == 0, "whole CPUs, not {cpu_lim}m");
    assert_eq!(
        bytes(&res["requests"]["memory"]),
        bytes(&res["limits"]["memory"]),
        "memory requests == limits"
    );
    assert_eq!(
        u64::from(cfg.server.cores) * 1000 + 1000,
        cpu_lim,
        "server.cores is one less than the CPU limit: the control thread needs a CPU of its own"
    );

    // Never root, nothing extra.
    let non_root =
        pod["securityContext"]["runAsNonRoot"] == true || c["securityContext"]["runAsNonRoot"] == true;
    assert!(non_root, "runAsNonRoot");
    for sc in [&pod["securityContext"], &c["securityContext"]] {
        if let Some(uid) = sc["runAsUser"].as_u64() {
            assert_ne!(uid, 0, "runAsUser");
        }
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    let drop: Vec<&str> =
        sc["capabilities"]["drop"].as_array().expect("drop").iter().filter_map(Value::as_str).collect();
    assert!(drop.contains(&"ALL"), "capabilities drop ALL");
    for cap in sc["capabilities"]["add"].as_array().into_iter().flatten() {
        assert_eq!(cap, "IPC_LOCK", "no capability but IPC_LOCK may be added");
    }
    let seccomp = s(pod, "/securityContext/seccompProfile/type");
    assert_ne!(seccomp, "Unconfined", "unconfined only through the opt-in component");

    // Spread: no two gateways on one node.
    let anti = &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    let pod_labels = labels(&w["spec"]["template"]["metadata"]["labels"]);
    let spread = anti.as_array().into_iter().flatten().any(|t| {
        t["topologyKey"] == "kubernetes.io/hostname"
            && selects(&t["labelSelector"]["matchLabels"], &pod_labels)
    });
    assert!(spread, "required anti-affinity on kubernetes.io/hostname");
    assert!(selects(&w["spec"]["selector"]["matchLabels"], &pod_labels), "the selector matches the pods");
}

/// Seconds a preStop hook waits: the `sleep` action, or `sleep N` run by exec.
fn prestop_sleep_secs(c: &Value) -> u64 {
    let pre = &c["lifecycle"]["preStop"];
    if let Some(n) = pre["sleep"]["seconds"].as_u64() {
        return n;
    }
    let cmd: Vec<&str> = pre["exec"]["command"]
        .as_array()
        .expect("a preStop sleep")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let joined = cmd.join(" ");
    let n = joined.split_whitespace().skip_while(|w| !w.ends_with("sleep")).nth(1).expect("sleep N");
    n.parse().unwrap_or_else(|_| panic!("preStop sleeps a whole number of seconds, not {n}"))
}

#[test]
fn every_replica_gets_its_own_node_id_and_a_valid_config() {
    // Goal: two running gateways never share a node_id (it is in every message id), and the
    // ConfigMap's smppgw.toml loads with each pod's environment.
    let objs = objects();
    let (w, c) = gateway(&objs);
    assert_eq!(kind_of(w), "StatefulSet", "a Deployment cannot give each pod its own small, stable node id");
    let node_id_env = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "SMPPGW__SERVER__NODE_ID")
        .expect("SMPPGW__SERVER__NODE_ID is set");
    assert_eq!(
        s(node_id_env, "/valueFrom/fieldRef/fieldPath"),
        "metadata.labels['apps.kubernetes.io/pod-index']",
        "node_id comes from the pod's ordinal"
    );
    let replicas = w["spec"]["replicas"].as_u64().expect("replicas");
    let start = w["spec"]["ordinals"]["start"].as_u64().unwrap_or(0);
    assert!(replicas >= 2, "several replicas");
    let last = start + replicas - 1;
    assert!(last <= 127, "ordinals {start}..={last} must fit node_id 0..=127");

    let toml = configmap_toml();
    for ordinal in [start, last] {
        let cfg = Config::load(&toml, "smppgw.toml", pod_overrides(w, c, ordinal))
            .unwrap_or_else(|e| panic!("pod {ordinal}: {e}"));
        assert_eq!(u64::from(cfg.server.node_id), ordinal);
        assert_eq!(u64::from(cfg.server.listen.port()), container_port(c, &Value::from("smpp")));
        assert_eq!(u64::from(cfg.server.http_listen.port()), container_port(c, &Value::from("http")));
        assert!(
            !cfg.server.listen.ip().is_loopback() && !cfg.server.http_listen.ip().is_loopback(),
            "reachable in a pod"
        );
    }

    // The API listens beyond loopback, so it needs the admin token; the backends come from the
    // Secret, whose template lists exactly the keys the pod reads.
    let secret_refs: BTreeMap<String, String> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let r = e.pointer("/valueFrom/secretKeyRef")?;
            Some((s(e, "/name").to_owned(), s(r, "/key").to_owned()))
        })
        .collect();
    for name in ["SMPPGW_ADMIN_TOKEN", "SMPPGW_DATABASE_URL", "SMPPGW_REDIS_URL"] {
        assert!(secret_refs.contains_key(name), "{name} comes from the Secret");
    }
    let template = yaml_docs(&k8s_dir().join("secret.example.yaml")).remove(0);
    assert_eq!(kind_of(&template), "Secret");
    assert!(template.get("data").is_none(), "the template holds no encoded (real-looking) values");
    let keys: BTreeSet<String> =
        template["stringData"].as_object().expect("stringData").keys().cloned().collect();
    let wanted: BTreeSet<String> = secret_refs.values().cloned().collect();
    assert_eq!(keys, wanted, "the template has exactly the keys the pod reads");
    for (k, v) in template["stringData"].as_object().unwrap() {
        let v = v.as_str().unwrap_or_default();
        assert!(v.starts_with('<') && v.ends_with('>'), "{k} is a placeholder in <...>, not {v:?}");
    }
}

#[test]
fn services_monitoring_disruption_budget_and_network_policy_fit_the_pods() {
    // Goal: customers reach SMPP on 2775, Prometheus reaches /metrics on 8080, a drain takes one
    // gateway at a time, and the NetworkPolicy lets exactly that traffic through.
    let objs = objects();
    let (w, c) = gateway(&objs);
    let pod_labels = labels(&w["spec"]["template"]["metadata"]["labels"]);
    let services: Vec<&Value> = objs.iter().map(|(_, v)| v).filter(|v| kind_of(v) == "Service").collect();
    let mut ports = BTreeSet::new();
    for svc in &services {
        assert!(
            selects(&svc["spec"]["selector"], &pod_labels),
            "{} selects the gateway pods",
            svc["metadata"]["name"]
        );
        for p in svc["spec"]["ports"].as_array().expect("ports") {
            let port = p["port"].as_u64().expect("port");
            let target = p.get("targetPort").cloned().unwrap_or_else(|| Value::from(port));
            assert_eq!(
                container_port(c, &target),
                port,
                "{} port {port} reaches the same container port",
                svc["metadata"]["name"]
            );
            ports.insert(port);
        }
    }
    assert!(ports.contains(&2775) && ports.contains(&8080), "Services expose 2775 and 8080: {ports:?}");
    let smpp = services
        .iter()
        .find(|v| {
            v["spec"]["ports"].as_array().unwrap().iter().any(|p| p["port"] == 2775)
                && v["spec"]["clusterIP"] != "None"
        })
        .expect("an SMPP Service");
    assert!(smpp["spec"]["sessionAffinity"].as_str().is_none_or(|a| a == "None"));
    if matches!(smpp["spec"]["type"].as_str(), Some("LoadBalancer" | "NodePort")) {
        assert_eq!(smpp["spec"]["externalTrafficPolicy"], "Local", "customers' source addresses are kept");
    }
    let headless = find(&objs, "Service", s(w, "/spec/serviceName"));
    assert_eq!(headless["spec"]["clusterIP"], "None", "the StatefulSet's service is headless");

    // ServiceMonitor -> exactly one Service, its named port, /metrics.
    let sm = objs.iter().map(|(_, v)| v).find(|v| kind_of(v) == "ServiceMonitor").expect("a ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let scraped: Vec<&&Value> = services
        .iter()
        .filter(|svc| selects(&sm["spec"]["selector"]["matchLabels"], &labels(&svc["metadata"]["labels"])))
        .collect();
    assert_eq!(scraped.len(), 1, "the ServiceMonitor selects one Service, so pods are scraped once");
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(s(endpoint, "/path"), "/metrics");
    let port_name = s(endpoint, "/port");
    let svc_port = scraped[0]["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == port_name);
    assert_eq!(svc_port.and_then(|p| p["port"].as_u64()), Some(8080), "scraped on the HTTP port");

    // PodDisruptionBudget: one at a time.
    let pdb = objs.iter().map(|(_, v)| v).find(|v| kind_of(v) == "PodDisruptionBudget").expect("a PDB");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], &pod_labels));
    let replicas = w["spec"]["replicas"].as_u64().unwrap();
    let one_at_a_time = pdb["spec"]["maxUnavailable"] == 1
        || pdb["spec"]["minAvailable"].as_u64().is_some_and(|m| m >= 2 && m < replicas);
    assert!(one_at_a_time, "maxUnavailable 1 or minAvailable >= 2: {}", pdb["spec"]);
    assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow", "drains work while all are unready");

    // NetworkPolicy.
    let np = objs.iter().map(|(_, v)| v).find(|v| kind_of(v) == "NetworkPolicy").expect("a NetworkPolicy");
    assert!(selects(&np["spec"]["podSelector"]["matchLabels"], &pod_labels));
    let rule_ports = |rule: &Value| -> Vec<u64> {
        rule["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_u64()).collect()
    };
    let ingress = np["spec"]["ingress"].as_array().expect("ingress rules");
    assert!(ingress.iter().any(|r| rule_ports(r).contains(&2775)), "SMPP in");
    for r in ingress.iter().filter(|r| rule_ports(r).contains(&8080)) {
        assert!(r["from"].as_array().is_some_and(|f| !f.is_empty()), "the HTTP API is not open to everyone");
    }
    assert!(ingress.iter().any(|r| rule_ports(r).contains(&8080)), "metrics in");
    let egress: Vec<u64> =
        np["spec"]["egress"].as_array().expect("egress rules").iter().flat_map(rule_ports).collect();
    for port in [53, 5432, 6379, 2775] {
        assert!(egress.contains(&port), "egress to port {port}");
    }
}

// ------------------------------------------------------------------------------------------------
// Bare metal.

/// `[Section] Key=Value` lines of a unit file; a key may repeat.
fn unit_keys(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not Key=Value: {line}"));
        out.entry((section.clone(), k.trim().to_owned())).or_default().push(v.trim().to_owned());
    }
    out
}

/// A systemd time span in seconds: `30`, `30s`, `1min`, `1min 30s`.
fn timespan_secs(v: &str) -> u64 {
    let mut total = 0;
    for part in v.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().unwrap_or_else(|_| panic!("bad time span {v}"));
        total += match &part[digits.len()..] {
            "" | "s" | "sec" => n,
            "m" | "min" => n * 60,
            "h" | "hr" => n * 3600,
            u => panic!("unit {u} in {v}"),
        };
    }
    total
}

#[test]
fn the_systemd_unit_sets_the_limits_that_matter_and_verifies() {
    // Goal: installed as shipped, the unit runs the gateway unprivileged with enough locked memory
    // and descriptors, lets it drain on stop, and passes `systemd-analyze verify`.
    let path = deploy_dir().join("systemd/smppgw.service");
    let text = read(&path);
    let keys = unit_keys(&text);
    let one = |section: &str, key: &str| -> String {
        let v = keys
            .get(&(section.to_owned(), key.to_owned()))
            .unwrap_or_else(|| panic!("[{section}] {key}= missing"));
        v.last().unwrap().clone()
    };
    let exec = one("Service", "ExecStart");
    assert!(exec.starts_with("/usr/local/bin/smppgw "), "{exec}");
    assert!(exec.contains("--config /etc/smppgw/smppgw.toml"), "{exec}");
    let user = one("Service", "User");
    assert!(!user.is_empty() && user != "root" && user != "0", "User={user}");
    let memlock = one("Service", "LimitMEMLOCK");
    let enough = memlock == "infinity"
        || memlock.strip_suffix('M').and_then(|m| m.parse::<u64>().ok()).is_some_and(|m| m >= 64)
        || memlock.strip_suffix('G').is_some();
    assert!(enough, "LimitMEMLOCK={memlock}: infinity or at least 64M");
    let nofile: u64 = one("Service", "LimitNOFILE").parse().expect("LimitNOFILE is a number");
    assert!(nofile >= 1 << 20, "LimitNOFILE={nofile}: 50k binds and their vendors need room");
    let grace_secs = u64::from(Config::embedded_default().server.shutdown_grace_ms).div_ceil(1000);
    let stop = timespan_secs(&one("Service", "TimeoutStopSec"));
    assert!(
        stop >= grace_secs * 3 / 2 + 15,
        "TimeoutStopSec={stop} must be at least 1.5 x shutdown_grace_ms ({grace_secs} s) + 15 s"
    );
    assert_eq!(one("Service", "KillSignal"), "SIGTERM");
    assert!(one("Service", "Restart") != "no");
    assert_eq!(one("Service", "EnvironmentFile"), "-/etc/smppgw/env");
    assert_eq!(one("Service", "NoNewPrivileges"), "yes");
    assert_eq!(one("Service", "ProtectSystem"), "strict");
    // A syscall filter must leave io_uring allowed.
    for f in keys.get(&("Service".to_owned(), "SystemCallFilter".to_owned())).into_iter().flatten() {
        if let Some(denied) = f.strip_prefix('~') {
            assert!(!denied.contains("io_uring") && !denied.contains("@aio"), "io_uring denied by {f}");
        } else {
            assert!(f.contains("io_uring_setup") || f.contains("@aio"), "io_uring not allowed by {f}");
        }
    }

    if !tool_runs("systemd-analyze", &["--version"]) {
        eprintln!("note: systemd-analyze not found; `systemd-analyze verify` not run");
        return;
    }
    // Verify a copy whose ExecStart points at this build (verify checks the binary exists).
    let dir = std::env::temp_dir().join(format!("smppgw-deploy-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("smppgw.service");
    let copy = text.replace("/usr/local/bin/smppgw", env!("CARGO_BIN_EXE_smppgw"));
    std::fs::write(&unit, copy).unwrap();
    let out =
        Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("systemd-analyze runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on keys it ignores; a line about our file is a mistake all the same.
    let about_ours: Vec<&str> = stderr.lines().filter(|l| l.contains("smppgw.service")).collect();
    assert!(out.status.success() && about_ours.is_empty(), "systemd-analyze verify: {stderr}");
}

/// The `SMPPGW_*` variables (one underscore: not the `SMPPGW__` setting overrides) the binary
/// reads: its flags' `env = "..."` and the log filter.
fn variables_the_binary_reads() -> BTreeSet<String> {
    let main = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs"));
    let mut out: BTreeSet<String> =
        main.split("env = \"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect();
    out.insert("SMPPGW_LOG".to_owned());
    out
}

#[test]
fn the_unit_and_the_pods_set_only_variables_the_binary_reads_and_keep_its_state() {
    // Goal: a variable the manifests set that the binary does not read (a typo, a renamed flag)
    // would be silently ignored; and both keep the node's state files (message ids, the receipts
    // still to come across a restart) on their persistent directory.
    let reads = variables_the_binary_reads();
    for flag in ["SMPPGW_ID_STATE", "SMPPGW_RECEIPT_STATE", "SMPPGW_CONFIG_CACHE"] {
        assert!(reads.contains(flag), "the binary reads {flag}: {reads:?}");
    }
    let single = |name: &str| name.starts_with("SMPPGW_") && !name.starts_with("SMPPGW__");
    let unit = unit_keys(&read(&deploy_dir().join("systemd/smppgw.service")));
    let mut unit_env = BTreeMap::new();
    for v in unit.get(&("Service".to_owned(), "Environment".to_owned())).into_iter().flatten() {
        let (name, value) = v.split_once('=').unwrap_or_else(|| panic!("Environment={v}"));
        unit_env.insert(name.to_owned(), value.to_owned());
    }
    let objs = objects();
    let (_, container) = gateway(&objs);
    let mut pod_env = BTreeMap::new();
    for e in container["env"].as_array().into_iter().flatten() {
        pod_env.insert(s(e, "/name").to_owned(), e["value"].as_str().unwrap_or_default().to_owned());
    }
    for (file, env) in [("the systemd unit", &unit_env), ("the StatefulSet", &pod_env)] {
        for name in env.keys().filter(|n| single(n)) {
            assert!(reads.contains(name), "{file} sets {name}, which the binary does not read");
        }
        for state in ["SMPPGW_ID_STATE", "SMPPGW_RECEIPT_STATE"] {
            let path = env.get(state).unwrap_or_else(|| panic!("{file} sets {state}"));
            assert!(path.starts_with("/var/lib/smppgw/"), "{file}: {state}={path} on the state directory");
        }
    }
    let unit_state = unit.get(&("Service".to_owned(), "StateDirectory".to_owned())).and_then(|v| v.last());
    assert_eq!(
        unit_state.map(String::as_str),
        Some("smppgw"),
        "the unit's StateDirectory is /var/lib/smppgw"
    );
}

#[test]
fn the_sysctls_cover_the_backlog_ports_and_descriptors() {
    // Goal: the sysctl file holds valid keys, and the accept queue is at least the gateway's
    // listen backlog (the kernel silently caps a backlog at somaxconn).
    let text = read(&deploy_dir().join("systemd/sysctl.conf"));
    let mut values = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key = value: {line}"));
        values.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let num = |k: &str| -> u64 {
        values
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing"))
            .parse()
            .unwrap_or_else(|_| panic!("{k} is a number"))
    };
    let backlog = u64::try_from(smppgw_engine::limits::LISTEN_BACKLOG).unwrap();
    assert!(num("net.core.somaxconn") >= backlog, "somaxconn >= LISTEN_BACKLOG {backlog}");
    assert!(num("net.ipv4.tcp_max_syn_backlog") >= backlog);
    assert!(num("net.core.netdev_max_backlog") > 0);
    assert!(num("fs.file-max") >= 1 << 20);
    for k in ["net.ipv4.ip_local_port_range", "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_keepalive_intvl"] {
        assert!(values.contains_key(k), "{k} missing");
    }
    if Path::new("/proc/sys/net/core").is_dir() {
        for k in values.keys() {
            let p = Path::new("/proc/sys").join(k.replace('.', "/"));
            assert!(p.exists(), "{k} is not a kernel setting here ({})", p.display());
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Container image.

/// Dockerfile instructions (keyword upper-cased, arguments), continuation lines joined.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if t.starts_with('#') {
            continue;
        }
        if let Some(cont) = t.strip_suffix('\\') {
            current.push_str(cont);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (k, rest) = current.split_once(char::is_whitespace).unwrap_or((current.as_str(), ""));
        out.push((k.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_unprivileged() {
    // Goal: the image is built by a Rust stage and runs from a small runtime stage as a numeric
    // non-root user, with the ports, entrypoint and runtime needs stated.
    let text = read(&deploy_dir().join("Dockerfile"));
    let ins = dockerfile_instructions(&text);
    let froms: Vec<&String> = ins.iter().filter(|(k, _)| k == "FROM").map(|(_, a)| a).collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].starts_with("rust:") && froms[0].contains("bookworm") && froms[0].ends_with(" AS builder"),
        "{}",
        froms[0]
    );
    let builds: Vec<&String> =
        ins.iter().filter(|(k, a)| k == "RUN" && a.contains("cargo build")).map(|(_, a)| a).collect();
    assert!(
        builds
            .iter()
            .any(|b| b.contains("--release") && b.contains("--locked") && b.contains("--bin smppgw"))
    );

    // The default image runs on any CPU of its architecture: a target CPU (x86-64-v3, say) is
    // only ever the builder's explicit choice, through the TARGET_CPU build argument.
    let target_cpu_args: Vec<&String> =
        ins.iter().filter(|(k, a)| k == "ARG" && a.starts_with("TARGET_CPU")).map(|(_, a)| a).collect();
    assert!(
        !target_cpu_args.is_empty() && target_cpu_args.iter().all(|a| *a == "TARGET_CPU="),
        "{target_cpu_args:?}"
    );
    for b in &builds {
        assert!(
            !b.contains("target-cpu") || b.contains("${TARGET_CPU:+-C target-cpu=${TARGET_CPU}}"),
            "no fixed target CPU: {b}"
        );
    }

    // The last stage is what `docker build` produces by default.
    let last_from = ins.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let runtime = &ins[last_from..];
    let base = &runtime[0].1;
    assert!(base.contains("distroless") || base.contains("slim"), "a small runtime base: {base}");
    let get =
        |key: &str| runtime.iter().filter(|(k, _)| k == key).map(|(_, a)| a.as_str()).collect::<Vec<_>>();
    let user = get("USER").last().copied().expect("USER in the runtime stage");
    let uid: u32 =
        user.split(':').next().unwrap().parse().expect("a numeric user, so runAsNonRoot can check it");
    assert_ne!(uid, 0);
    let exposed: BTreeSet<&str> = get("EXPOSE").iter().flat_map(|a| a.split_whitespace()).collect();
    assert!(exposed.contains("2775") && exposed.contains("8080"), "EXPOSE {exposed:?}");
    let entry = get("ENTRYPOINT").last().copied().expect("ENTRYPOINT");
    let entry: Vec<String> = serde_json::from_str(entry).expect("exec-form ENTRYPOINT");
    assert_eq!(entry[0], "/usr/local/bin/smppgw");
    assert!(
        runtime
            .iter()
            .any(|(k, a)| k == "COPY" && a.contains("--from=builder") && a.contains("/usr/local/bin/smppgw"))
    );
    assert!(!get("HEALTHCHECK").is_empty(), "HEALTHCHECK states what health checking there is");

    let lower = text.to_ascii_lowercase();
    for word in ["memlock", "io_uring", "seccomp"] {
        assert!(lower.contains(word), "the Dockerfile explains {word}");
    }
    let ignore = read(&deploy_dir().join("Dockerfile.dockerignore"));
    assert!(ignore.lines().any(|l| l.trim().ends_with("target")), "target/ stays out of the build context");
}

#[test]
fn the_seccomp_helper_adds_exactly_the_io_uring_syscalls() {
    // Goal: deploy/seccomp/add-io-uring.py turns a runtime default profile into one that lets the
    // gateway start, leaving everything else as it was.
    if !tool_runs("python3", &["--version"]) {
        eprintln!("note: python3 not found; deploy/seccomp/add-io-uring.py not run");
        return;
    }
    let dir = std::env::temp_dir().join(format!("smppgw-deploy-seccomp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("default.json");
    std::fs::write(
        &input,
        r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read","io_uring_enter"],"action":"SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let run = |p: &Path| {
        let out = Command::new("python3")
            .arg(deploy_dir().join("seccomp/add-io-uring.py"))
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let out = run(&input);
    assert_eq!(out["defaultAction"], "SCMP_ACT_ERRNO");
    let rules = out["syscalls"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[1],
        serde_json::json!({"names": ["io_uring_setup", "io_uring_register"], "action": "SCMP_ACT_ALLOW"})
    );
    // Idempotent.
    std::fs::write(&input, out.to_string()).unwrap();
    assert_eq!(run(&input)["syscalls"].as_array().unwrap().len(), 2);
    // --oci, for loaders that ignore moby's keys (containerd): a rule for CAP_SYS_ADMIN holders is
    // dropped rather than turned into an allow for everyone; an architecture condition is removed.
    std::fs::write(
        &input,
        r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64"}],"syscalls":[
            {"names":["read"],"action":"SCMP_ACT_ALLOW"},
            {"names":["mount","unshare"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}},
            {"names":["arch_prctl"],"action":"SCMP_ACT_ALLOW","includes":{"arches":["amd64"]}},
            {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}],
             "excludes":{"caps":["CAP_SYS_ADMIN"],"arches":["s390","s390x"]}},
            {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":2114060288,"op":"SCMP_CMP_MASKED_EQ"}],
             "includes":{"arches":["s390","s390x"]}}]}"#,
    )
    .unwrap();
    let out = Command::new("python3")
        .arg(deploy_dir().join("seccomp/add-io-uring.py"))
        .args(["--oci", "--arch", "amd64"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.get("archMap").is_none());
    assert_eq!(
        out["syscalls"],
        serde_json::json!([
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
            // The flags check of x86_64 stays; s390's, on the second argument, would let any
            // clone with a NULL stack through here: dropped.
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["io_uring_setup", "io_uring_enter", "io_uring_register"], "action": "SCMP_ACT_ALLOW"}
        ])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------------------------------------
// Grafana dashboard and /metrics.

fn dashboard() -> Value {
    serde_json::from_str(&read(&deploy_dir().join("grafana/smppgw-dashboard.json")))
        .expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and template variable queries.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(s(t, "/expr").to_owned());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"]
            .as_str()
            .or_else(|| if v["type"] == "query" { v["query"].as_str() } else { None })
        {
            out.push(q.to_owned());
        }
    }
    out
}

/// `smppgw_*` identifiers in `expr`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("smppgw_") {
        let start = i + pos;
        let word_start = start == 0
            || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_' || b[start - 1] == b':');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b':') {
            end += 1;
        }
        if word_start {
            out.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// The family a series name belongs to (`x_bucket` -> `x` when `x` is a family).
fn family_of(name: &str, families: &[&str]) -> Option<String> {
    if families.contains(&name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        name.strip_suffix(suffix).filter(|base| families.contains(base)).map(str::to_owned)
    })
}

/// Label names an expression groups by or a legend prints.
fn label_names(expr: &str, legend: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kw in ["by (", "by(", "without (", "without("] {
        let mut rest = expr;
        while let Some(pos) = rest.find(kw) {
            let after = &rest[pos + kw.len()..];
            let close = after.find(')').expect("closing parenthesis");
            out.extend(after[..close].split(',').map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()));
            rest = &after[close..];
        }
    }
    let mut rest = legend;
    while let Some(pos) = rest.find("{{") {
        let after = &rest[pos + 2..];
        let close = after.find("}}").expect("closing }}");
        out.insert(after[..close].trim().to_owned());
        rest = &after[close..];
    }
    out
}

#[test]
fn the_dashboard_is_valid_and_names_only_exported_families() {
    // Goal: the dashboard imports into Grafana with a Prometheus data source picked by the
    // operator, and every metric it queries is one the gateway declares.
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    let vars = d["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource")
    );
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "panel ids are unique");
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "panel {} fits the grid",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {} uses the variable", p["title"]);
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} queries something", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}");
        }
    }

    // Every panel query is valid PromQL once Grafana has put in its variables.
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = s(t, "/expr");
            let concrete =
                expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*");
            if let Err(e) = promql_parser::parser::parse(&concrete) {
                panic!("panel {}: {expr} is not valid PromQL: {e}", p["title"]);
            }
        }
    }

    let families = smppgw_control::metrics::METRIC_FAMILIES;
    let mut used = BTreeSet::new();
    for expr in dashboard_exprs(&d) {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{expr} queries no smppgw metric");
        for n in names {
            let f = family_of(&n, families)
                .unwrap_or_else(|| panic!("{n} (in {expr}) is not in METRIC_FAMILIES"));
            used.insert(f);
        }
    }
    // The panels the issue asks for: throughput, errors, latency, occupancy, vendor binds,
    // receipts, sessions by core.
    for f in [
        "smppgw_submits_total",
        "smppgw_submits_accepted_total",
        "smppgw_submits_refused_total",
        "smppgw_submits_rejected_total",
        "smppgw_submit_latency_seconds",
        "smppgw_vendor_submit_latency_seconds",
        "smppgw_vendor_bind_load",
        "smppgw_vendor_bind_capacity",
        "smppgw_vendor_bind_up",
        "smppgw_receipts_received_total",
        "smppgw_core_sessions_bound",
    ] {
        assert!(used.contains(f), "the dashboard shows {f}");
    }
    let exprs = dashboard_exprs(&d).join("\n");
    for hist in ["smppgw_submit_latency_seconds_bucket", "smppgw_vendor_submit_latency_seconds_bucket"] {
        for q in ["0.5", "0.99", "0.999"] {
            let needle = format!("histogram_quantile({q}, sum by (le) (rate({hist}");
            assert!(exprs.contains(&needle), "p{q} of {hist}");
        }
    }
}

/// Sample lines of a scrape: (series name, label names).
fn samples(scrape: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut out = Vec::new();
    for line in scrape.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let mut names = BTreeSet::new();
        if line[name_end..].starts_with('{') {
            // key="value" pairs; values here never hold '"' unescaped.
            let body = &line[name_end + 1..line.rfind('}').unwrap()];
            let mut in_quotes = false;
            let mut key = String::new();
            let mut prev = ' ';
            for ch in body.chars() {
                match ch {
                    '"' if prev != '\\' => in_quotes = !in_quotes,
                    '=' if !in_quotes => {
                        names.insert(key.trim_matches(',').trim().to_owned());
                        key.clear();
                    }
                    c if !in_quotes => key.push(c),
                    _ => {}
                }
                prev = ch;
            }
        }
        out.push((line[..name_end].to_owned(), names));
    }
    out
}

#[test]
fn every_family_on_the_dashboard_is_in_a_live_scrape() {
    // Goal: an operator who imports the dashboard sees data in every panel: a running gateway
    // with a bound customer and a vendor serves, on GET /metrics, every family the dashboard
    // queries, with samples and with the labels its panels group by.
    let vendor = common::sim(|_| {});
    let gw =
        smppgw_engine::start(common::config(&[("v1", vendor.local_addr())])).expect("the gateway starts");
    let state = smppgw_control::http::ApiState::for_gateway(&gw);
    let control = smppgw_control::http::spawn_control_thread(
        smppgw_control::http::HttpConfig::new("127.0.0.1:0".parse().unwrap()),
        move || async move { Ok(state) },
    )
    .expect("the HTTP API starts");
    let api = control.local_addr();

    let mut customer = common::Client::connect(gw.local_addr);
    assert_eq!(customer.bind("trx", "c1", "pw"), CommandStatus::ESME_ROK);
    assert!(
        common::wait_for(Duration::from_secs(5), || vendor.stats().binds_current >= 2),
        "vendor binds up"
    );
    let (status, _) = customer.submit("15550001234", "dashboard");
    assert_eq!(status, CommandStatus::ESME_ROK);

    let mut scrape = String::new();
    let live = common::wait_for(Duration::from_secs(5), || {
        let (code, body) = http_get(api, "/metrics");
        assert_eq!(code, 200, "GET /metrics");
        scrape = body;
        scrape.contains("smppgw_submits_accepted_total 1\n")
            && scrape.contains("smppgw_customer_binds{customer=\"c1\"} 1\n")
    });
    assert!(live, "the scrape shows the accepted submit and the bound customer:\n{scrape}");
    let declared =
        smppgw_control::metrics::check_exposition(&scrape).unwrap_or_else(|e| panic!("{e}\n{scrape}"));

    let families = smppgw_control::metrics::METRIC_FAMILIES;
    let samples = samples(&scrape);
    let mut sampled: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, label_names) in &samples {
        if let Some(f) = family_of(name, families) {
            sampled.entry(f).or_default().extend(label_names.iter().cloned());
        }
    }
    let mut scrape_labels: BTreeSet<String> = sampled.values().flatten().cloned().collect();
    // Added by Prometheus (target labels) or the ServiceMonitor's relabeling, not by the gateway.
    scrape_labels.extend(["instance", "job", "pod", "namespace"].map(str::to_owned));

    let d = dashboard();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = s(t, "/expr");
            for n in metric_names(expr) {
                let f = family_of(&n, families).unwrap_or_else(|| panic!("{n} is not in METRIC_FAMILIES"));
                assert!(declared.contains(&f), "{f} (panel {}) is not in the scrape", p["title"]);
                assert!(sampled.contains_key(&f), "{f} (panel {}) has no sample in the scrape", p["title"]);
                assert!(
                    samples.iter().any(|(name, _)| *name == n),
                    "series {n} (panel {}) is not in the scrape",
                    p["title"]
                );
            }
            for l in label_names(expr, t["legendFormat"].as_str().unwrap_or_default()) {
                assert!(
                    scrape_labels.contains(&l),
                    "label {l} (panel {}) is on no series of the scrape",
                    p["title"]
                );
            }
        }
    }

    drop(customer);
    control.stop().expect("the HTTP API stops");
    gw.shutdown();
    gw.join();
}

// ------------------------------------------------------------------------------------------------
// Documentation.

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn the_deploy_guides_link_only_to_what_exists() {
    // Goal: every relative link and anchor in the deploy guides leads somewhere.
    for md in ["README.md", "k8s/README.md", "TUNING.md"] {
        let path = deploy_dir().join(md);
        let text = read(&path);
        let anchors_of = |text: &str| -> BTreeSet<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix('#'))
                .map(|h| slug(h.trim_start_matches('#')))
                .collect()
        };
        let mut rest = text.as_str();
        while let Some(pos) = rest.find("](") {
            let after = &rest[pos + 2..];
            let close = after.find(')').expect("closing parenthesis of a link");
            let target = &after[..close];
            rest = &after[close..];
            if target.starts_with("http://")
                || target.starts_with("https://")
                || target.starts_with("mailto:")
            {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if file.is_empty() { path.clone() } else { path.parent().unwrap().join(file) };
            assert!(linked.exists(), "{md}: link to {target}: {} does not exist", linked.display());
            if !anchor.is_empty() && linked.extension().is_some_and(|e| e == "md") {
                assert!(
                    anchors_of(&read(&linked)).contains(anchor),
                    "{md}: no heading for #{anchor} in {}",
                    linked.display()
                );
            }
        }
    }
}
