//! The command line: clap types only. `main.rs` holds the one dispatch
//! `match`; each command is one file in `commands/` with the same signature,
//! `pub fn run(global: &GlobalArgs, args: &XArgs) -> Result<ExitCode>`.
//!
//! To add a subcommand: a variant of [`Command`] with its `Args` struct here
//! (flatten [`DefArgs`] if it takes a definition), `commands/<name>.rs` with
//! `run`, and one arm in `main.rs`. Flags in [`GlobalArgs`] (`--json`,
//! `--cache`, `--offline`, `--allow-insecure-urls`) are accepted before or
//! after the subcommand; every command honours `--json`. What the flags
//! mean to the other modules (`GlobalArgs::cache_dir`, `load_options`,
//! `progress`, `fetch_options`) is in `commands/mod.rs`, so this module
//! depends on none of them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use harness::Role;

#[derive(Debug, Parser)]
#[command(
    name = "kubebake",
    version,
    about = "Bakes one golden, verified Kubernetes node disk image from a declarative definition"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON on stdout (progress bars are hidden).
    #[arg(long, global = true)]
    pub json: bool,
    /// Artifact cache directory [default: $XDG_CACHE_HOME/kubebake or ~/.cache/kubebake].
    #[arg(long, global = true, value_name = "DIR", env = "KUBEBAKE_CACHE")]
    pub cache: Option<PathBuf>,
    /// Never touch the network: use only the cache (and file:// URLs).
    #[arg(long, global = true)]
    pub offline: bool,
    /// Accept http:// and file:// artifact URLs (digests are still verified).
    #[arg(long, global = true)]
    pub allow_insecure_urls: bool,
}

/// The image definition argument.
#[derive(Debug, Clone, Args)]
pub struct DefArgs {
    /// Image definition (YAML), e.g. images/k8s-node.yaml.
    #[arg(value_name = "DEF")]
    pub def: PathBuf,
    /// Directory holding units/ and dropins/ [default: parent of the definition's directory].
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a definition (and render its templates) without downloading anything.
    Validate(ValidateArgs),
    /// Download and verify every artifact into the cache.
    Fetch(FetchArgs),
    /// Build the golden disk image (raw, qcow2, kernel, initrd, manifest).
    Build(BuildArgs),
    /// Remove what interrupted builds left (staging directories, cache
    /// temporaries); never touches a build still running.
    Clean(CleanArgs),
    /// Verify a built image against its manifest (libguestfs, read-only).
    Inspect(InspectArgs),
    /// Boot the image once under QEMU to its login prompt (golden image untouched).
    Boot(BootArgs),
    /// Cold build, warm rebuild and image size against mmdebstrap + mkfs.ext4 -d.
    Bench(BenchArgs),
    /// Start a laptop cluster: VMs of the golden image in a private network.
    Up(UpArgs),
    /// Stop a cluster started with `up --detach`; leaves no VM or namespace.
    Down(DownArgs),
    /// Show the VMs of a cluster and the stage each has reached.
    Status(StatusArgs),
    /// Print ready-to-use user-data (#cloud-config) for a node.
    Userdata(UserdataArgs),
    /// Boot 1 master + 2 minions and time the boot stages.
    BenchVm(BenchVmArgs),
    /// Run Kubernetes' conformance suite (built from the image's Kubernetes
    /// module) against a cluster started with `up --detach`.
    Conformance(ConformanceArgs),
    /// Measure a cluster started with `up --detach` against the CIS
    /// Kubernetes Benchmark with kube-bench (built from its Go module):
    /// PASS/FAIL/WARN/INFO per node and every FAIL.
    KubeBench(KubeBenchArgs),
    /// Cluster secrets: CAs, service-account keys, bootstrap token, weave
    /// password; made once per cluster, never baked into an image.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Make the secrets of a new cluster in DIR (0700, files 0600); refuses
    /// a directory that already holds any of them.
    Init(ClusterInitArgs),
    /// Replace only the bootstrap token (and its expiry) of a cluster.
    Token(ClusterTokenArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ClusterInitArgs {
    /// Cluster name (one DNS label): nodes find masters.<name>.<domain>.
    pub name: String,
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// How long the bootstrap token is valid, e.g. 24h, 30m; at most 7 days.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_ttl: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ClusterTokenArgs {
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// How long the new token is valid; at most 7 days.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub token_ttl: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub def: DefArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub def: DefArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub def: DefArgs,
    /// Output directory for the image, kernel, initrd and manifest.
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,
    /// rolectl binary to bake in [default: `rolectl` beside this kubebake binary].
    #[arg(long, value_name = "PATH")]
    pub rolectl: Option<PathBuf>,
    /// Fail at once if another build is writing the output directory
    /// [default: wait for it].
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CleanArgs {
    /// Output directories to clean of interrupted builds' staging
    /// directories [default: out].
    #[arg(value_name = "OUT_DIR")]
    pub out_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The image (.raw or .qcow2) written by `kubebake build`.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Its manifest [default: <image stem>.manifest.json beside it].
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BootArgs {
    /// The golden image (.qcow2 or .raw) written by `kubebake build`.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Boot the exported kernel and initrd directly instead of through the
    /// image's MBR and syslinux.
    #[arg(long)]
    pub direct_kernel: bool,
    /// Stop at the login prompt (default); `--until-login=false` waits for
    /// the guest to power itself off instead.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub until_login: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Keep the serial log here [default: a temporary directory].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub def: DefArgs,
    /// Scratch directory for the floor, the cold and the warm build.
    #[arg(long, value_name = "DIR", default_value = "target/bench")]
    pub work: PathBuf,
    /// Only the warm rebuild: no floor, no cold build; uses the cache
    /// (`--cache`) as it is, after one uncounted build.
    #[arg(long)]
    pub warm_only: bool,
    /// Warm rebuilds to count (min/median/max), each after a new change.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// rolectl binary to bake in [default: `rolectl` beside this kubebake binary].
    #[arg(long, value_name = "PATH")]
    pub rolectl: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Golden image (qcow2; kernel, initrd and manifest beside it).
    #[arg(long, default_value = "out/k8s-node-source.qcow2")]
    pub image: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub masters: u32,
    #[arg(long, default_value_t = 2)]
    pub minions: u32,
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    /// DNS zone of the VPC.
    #[arg(long, default_value = "k8s")]
    pub domain: String,
    /// Memory per VM, MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Memory of each master, MiB (the control plane needs more).
    #[arg(long, default_value_t = 2560)]
    pub master_memory: u32,
    /// vCPUs of each master.
    #[arg(long, default_value_t = 2)]
    pub master_cpus: u32,
    /// Each VM's disk in GiB, like an instance's root volume (EC2's default
    /// is 8): the root partition and file system grow into it at first
    /// boot. Copy-on-write: only what the VM writes takes host space.
    #[arg(long, value_name = "GIB", default_value_t = 8)]
    pub disk_size: u32,
    /// The same user-data file for every instance (like run-instances
    /// --user-data); without it each VM gets generated role user-data with
    /// the cluster's credentials.
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// Cluster secrets (`kubebake cluster init`) for the generated
    /// user-data [default: made for this cluster in <state dir>/secrets].
    #[arg(long, value_name = "DIR", conflicts_with = "user_data")]
    pub secrets: Option<PathBuf>,
    /// Return only once every minion is Ready (like `kind create cluster
    /// --wait`), e.g. 20m; then write the admin kubeconfig to the state dir.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Option<std::time::Duration>,
    /// Expected minion count in generated user-data (default: --minions).
    #[arg(long)]
    pub expected_minions: Option<u32>,
    /// Direct kernel boot (-kernel/-initrd/-append) instead of SeaBIOS.
    #[arg(long)]
    pub kernel_boot: bool,
    /// Return once the VMs are started; `kubebake down` stops them.
    #[arg(long)]
    pub detach: bool,
    /// State directory (default /run/kubebake/<cluster>).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Internal: the background process of --detach.
    #[arg(long, hide = true)]
    pub daemon: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Also delete every leftover `kb-*` network namespace (careful: other
    /// harness runs on this host use that prefix too).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ConformanceArgs {
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The definition whose `kubernetes` Go build the suite is built from
    /// (the cluster's image).
    #[arg(
        long,
        value_name = "DEF",
        default_value = "images/k8s-node-source.yaml"
    )]
    pub definition: PathBuf,
    /// The serial conformance tests (`[Serial].*[Conformance]`, one at a
    /// time) instead of the parallel ones.
    #[arg(long)]
    pub serial: bool,
    /// Ginkgo's focus regex, instead of the conformance tests.
    #[arg(long, value_name = "REGEX")]
    pub focus: Option<String>,
    /// Ginkgo's skip regex, instead of `[Serial]|[Disruptive]` (parallel
    /// runs) or nothing (serial runs).
    #[arg(long, value_name = "REGEX")]
    pub skip: Option<String>,
    /// Parallel Ginkgo processes (parallel runs).
    #[arg(long, default_value_t = 2)]
    pub nodes: u32,
    /// The whole run's time limit (Ginkgo's --timeout).
    #[arg(long, default_value = "24h")]
    pub timeout: String,
    /// Where the JUnit report (junit_01.xml), the run's log and the
    /// repository list go [default: <state dir>/conformance].
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// List the selected tests without running them.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct KubeBenchArgs {
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Where kube-bench's wrapper module (go/kube-bench/) and kubebake's
    /// paths for it (kube-bench/config.yaml) are.
    #[arg(long, value_name = "DIR", default_value = "images")]
    pub images: PathBuf,
    /// Where each node's JSON report (<node>.json) goes
    /// [default: <state dir>/kube-bench].
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct UserdataArgs {
    #[arg(long)]
    pub role: Role,
    #[arg(long, default_value = "demo")]
    pub cluster: String,
    #[arg(long)]
    pub expected_minions: Option<u32>,
    #[arg(long)]
    pub domain: Option<String>,
    /// Public key file for the default user (ssh_authorized_keys).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// Cluster secrets made by `kubebake cluster init`: a master gets the
    /// CAs' keys, service-account keys and the bootstrap token; a minion the
    /// CA certificate (and pin) and the token (no client certificate: the
    /// kubelet gets its own by TLS bootstrapping, kube-proxy uses it).
    #[arg(long, value_name = "DIR")]
    pub secrets: Option<PathBuf>,
    /// A minion's API server URL [default: https://masters.<cluster>.<domain>:6443].
    #[arg(long, value_name = "URL")]
    pub api_server: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchVmArgs {
    #[arg(long, default_value = "out/k8s-node-source.qcow2")]
    pub image: PathBuf,
    /// Memory of each minion, MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Memory of the master, MiB.
    #[arg(long, default_value_t = 2560)]
    pub master_memory: u32,
    /// vCPUs of the master.
    #[arg(long, default_value_t = 2)]
    pub master_cpus: u32,
    /// Per-stage time limit, seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Runs of each scenario (min/median/max are printed).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// What to time (repeatable): `single` (one minion alone), `parallel`
    /// (3 minions at once), `weave` (1 master + 2 minions up to weave on
    /// both minions), `kubernetes` (1 master + 2 minions up to both nodes
    /// Ready: about 15 minutes a run under TCG).
    #[arg(long = "scenario", value_enum, default_values_t = [Scenario::Single, Scenario::Parallel, Scenario::Weave])]
    pub scenarios: Vec<Scenario>,
    /// A baseline image (e.g. built from an earlier commit) timed in the
    /// same run, each of its runs right before the image's own; the ratios
    /// of the medians are printed.
    #[arg(long, value_name = "QCOW2")]
    pub baseline: Option<PathBuf>,
}

/// A `bench-vm` scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Single,
    Parallel,
    Weave,
    Kubernetes,
}

/// The state directory of `--cluster` / `--state-dir`.
pub fn state_dir(cluster: &str, given: Option<&PathBuf>) -> PathBuf {
    given
        .cloned()
        .unwrap_or_else(|| harness::state::default_dir(cluster))
}

/// Logging to stderr, filtered by `RUST_LOG` (default `warn`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        match Cli::try_parse_from(args) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn until_login_can_be_turned_off() {
        let until = |args: &[&str]| match parse(args).command {
            Command::Boot(b) => b.until_login,
            other => panic!("{other:?}"),
        };
        assert!(until(&["kubebake", "boot", "x.qcow2"]));
        assert!(until(&["kubebake", "boot", "x.qcow2", "--until-login"]));
        assert!(!until(&[
            "kubebake",
            "boot",
            "x.qcow2",
            "--until-login=false"
        ]));
        assert!(!until(&[
            "kubebake",
            "boot",
            "x.qcow2",
            "--until-login",
            "false"
        ]));
    }
}
