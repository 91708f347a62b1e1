//! The permanent diagnostic codes of the loader and validator. A code never changes meaning;
//! retired codes are not reused. `bulkhead check --list-codes` prints this table.

use bulkhead_model::Severity;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
}

macro_rules! codes {
    ($($ident:ident = $code:literal, $name:literal, $severity:ident, $summary:literal;)*) => {
        $(pub const $ident: Code = Code {
            code: $code, name: $name, severity: Severity::$severity, summary: $summary,
        };)*
        /// Every code, in code order.
        pub const ALL: &[Code] = &[$($ident),*];
    };
}

codes! {
    IO_ERROR = "BH001", "unreadable-input", Error, "a file or directory could not be read";
    YAML_SYNTAX = "BH002", "yaml-syntax", Error, "the text is not valid YAML";
    YAML11_BOOLEAN = "BH003", "yaml11-boolean", Warning,
        "a plain yes/no/on/off/y/n is a boolean for kubectl (YAML 1.1) but a string in YAML 1.2";
    YAML11_OCTAL = "BH004", "yaml11-octal", Warning,
        "a number with a leading zero is octal for kubectl (YAML 1.1) but decimal in YAML 1.2";
    DUPLICATE_KEY = "BH005", "duplicate-key", Error, "a mapping has the same key twice";
    NOT_AN_OBJECT = "BH006", "not-a-kubernetes-object", Error,
        "a document is not a mapping with apiVersion and kind";
    WRONG_TYPE = "BH007", "wrong-type", Error, "a field has the wrong type or a required field is missing";
    UNKNOWN_FIELD = "BH008", "unknown-field", Error,
        "a field the API does not define (kubectl apply rejects it under strict field validation)";
    MISSING_NAME = "BH009", "missing-name", Error, "metadata.name is missing";
    DUPLICATE_OBJECT = "BH010", "duplicate-object", Error,
        "the same object is defined twice (an error within one file, a warning across files)";
    SKIPPED_KIND = "BH011", "skipped-kind", Info, "a kind Bulkhead does not analyse was skipped";
    UNSUPPORTED_API_VERSION = "BH012", "unsupported-api-version", Error,
        "a known kind under an apiVersion the API server does not serve";
    INVALID_NAME = "BH013", "invalid-name", Error, "metadata.name or namespace is not a valid DNS name";
    SKIPPED_ENTRY = "BH014", "skipped-entry", Warning,
        "a directory entry that is not a regular file (FIFO, device, socket, loop) was not read";
    INPUT_LIMIT = "BH015", "input-limit", Error,
        "a document exceeds a limit of the API server or kubectl (alias expansion, nesting, 3 MiB per object)";
    KUSTOMIZE_SOURCE = "BH016", "kustomize-source", Warning,
        "a directory with kustomization.yaml holds Kustomize sources, not objects; render it first";
    EMPTY_INPUT = "BH017", "empty-input", Warning, "the input holds no Kubernetes object";
    UNKNOWN_KIND = "BH018", "unknown-kind", Error,
        "a kind close to a known kind of the same API group (a typo); the API server rejects it";
    INVALID_MODE = "BH019", "invalid-mode", Error,
        "bulkhead.io/mode is not audit or enforce (a warning where it cannot apply: not a policy, or a staged one)";
    INVALID_PROTOCOL = "BH020", "invalid-protocol", Error, "ports[].protocol is not TCP, UDP or SCTP";
    INVALID_PORT = "BH021", "invalid-port", Error, "a numeric port is outside 1-65535";
    INVALID_PORT_NAME = "BH022", "invalid-port-name", Error, "a named port is not a valid IANA service name";
    INVALID_END_PORT = "BH023", "invalid-end-port", Error,
        "endPort needs a numeric port, must be >= port and within 1-65535";
    INVALID_PEER = "BH024", "invalid-peer", Error,
        "a peer sets no field, or combines ipBlock with a selector";
    INVALID_CIDR = "BH025", "invalid-cidr", Error, "ipBlock.cidr or except is not a CIDR";
    EXCEPT_OUTSIDE_CIDR = "BH026", "except-outside-cidr", Error,
        "an except entry is not a strict subset of its cidr";
    CIDR_HOST_BITS = "BH027", "cidr-host-bits", Warning,
        "a CIDR has host bits set; it is read as its network address";
    INVALID_LABEL_SELECTOR = "BH028", "invalid-label-selector", Error,
        "a label selector has a bad key, value, operator or values list";
    INVALID_POLICY_TYPES = "BH029", "invalid-policy-types", Error,
        "policyTypes has more than two entries or a value other than Ingress/Egress";
    AUDITED_POLICY = "BH030", "audited-policy", Info,
        "a policy in per-policy audit (bulkhead.io/mode: audit): not enforced (nor linted as enforced); the agent logs its would-be verdicts";
    INVALID_CALICO_SELECTOR = "BH040", "invalid-calico-selector", Error,
        "a Calico selector expression does not parse, or uses global() where it is not allowed";
    INVALID_CALICO_RULE = "BH041", "invalid-calico-rule", Error,
        "a Calico policy, rule or tier breaks Calico's validation (action, ICMP, nets, types, tiers)";
    UNSUPPORTED_FIELD = "BH042", "unsupported-field", Warning,
        "a field Bulkhead cannot evaluate (L7 HTTP, Service matches, domain names); how it is treated is stated";
    INVALID_CLUSTER_POLICY = "BH050", "invalid-admin-network-policy", Error,
        "an AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy breaks its CRD schema";
}
