//! `kubebake up`: a laptop cluster from the golden image, like
//! `aws ec2 run-instances` into a private VPC. Starts the VPC and the VMs and
//! records the [`State`] that `status` and `down` read.

use std::path::Path;

use anyhow::{bail, Result};

use crate::cluster::{probe_stage, Cluster, ClusterOptions, Datasource, Sizing, UserData, VmSpec};
use crate::state::{State, VmStatus};
use crate::{process, userdata, BootSpec, Role};

/// Text added to the generated user-data of each role.
#[derive(Debug, Clone)]
pub struct RoleSections {
    pub master: String,
    pub minion: String,
}

impl RoleSections {
    /// Generated `#cloud-config` for `role` plus that role's section, as a
    /// file (the harness adds its SSH key in a second MIME part).
    pub fn user_data(
        &self,
        role: Role,
        cluster: &str,
        domain: Option<&str>,
        expected_minions: Option<u32>,
    ) -> UserData {
        let mut text = userdata::cloud_config(role, cluster, domain, expected_minions, &[]);
        text.push_str(match role {
            Role::Master => &self.master,
            Role::Minion => &self.minion,
        });
        UserData::File(text.into_bytes())
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct UpPlan {
    pub cluster: String,
    /// DNS zone of the VPC.
    pub domain: String,
    pub masters: u32,
    pub minions: u32,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Each VM's disk, GiB (the root grows into it at first boot).
    pub disk_gib: u32,
    /// The same user-data for every instance (verbatim); None: each VM gets
    /// generated role user-data.
    pub user_data: Option<Vec<u8>>,
    /// Sections appended to each role's generated user-data (the cluster's
    /// credentials: `kubernetes:` keys from `kubebake cluster init`).
    pub credentials: Option<RoleSections>,
    /// Masters' memory and vCPUs (the control plane needs more).
    pub master: Option<Sizing>,
    /// Expected minion count in generated user-data (default: `minions`).
    pub expected_minions: Option<u32>,
    /// Direct kernel boot instead of SeaBIOS.
    pub kernel_boot: bool,
}

impl UpPlan {
    /// Refuses names rolectl would refuse at boot and an empty cluster.
    pub fn check(&self) -> Result<()> {
        userdata::check_cluster(&self.cluster)?;
        userdata::check_domain(&self.domain)?;
        if self.masters + self.minions == 0 {
            bail!("nothing to start: --masters and --minions are both 0");
        }
        Ok(())
    }

    /// VM names and roles: master1.., minion1..
    pub fn vms(&self) -> Vec<(String, Role)> {
        (1..=self.masters)
            .map(|i| (format!("master{i}"), Role::Master))
            .chain((1..=self.minions).map(|i| (format!("minion{i}"), Role::Minion)))
            .collect()
    }
}

/// Starts the cluster of `plan` with its state in `state_dir`; the VMs live
/// as long as the returned cluster (and this thread).
pub fn start(image: &BootSpec, plan: &UpPlan, state_dir: &Path) -> Result<(Cluster, State)> {
    plan.check()?;
    if let Ok(old) = State::read(state_dir) {
        if process::alive(old.pid) {
            bail!(
                "cluster {} is already up (pid {}); `kubebake down --cluster {}` first",
                plan.cluster,
                old.pid,
                plan.cluster
            );
        }
    }
    crate::private::dir(state_dir)?;
    let mut c = Cluster::start(ClusterOptions {
        image: image.clone(),
        domain: plan.domain.clone(),
        memory_mib: plan.memory_mib,
        cpus: plan.cpus,
        master: plan.master,
        disk_gib: Some(plan.disk_gib),
        work_dir: state_dir.join("vms"),
        die_with_parent: true,
    })?;
    let expected = plan.expected_minions.unwrap_or(plan.minions);
    for (name, role) in plan.vms() {
        let user_data = match &plan.user_data {
            Some(b) => UserData::File(b.clone()),
            None => {
                let expected_minions = (role == Role::Minion).then_some(expected);
                match &plan.credentials {
                    // Generated role user-data plus the credentials, the
                    // harness SSH key in a second MIME part.
                    Some(sections) => sections.user_data(
                        role,
                        &plan.cluster,
                        Some(&plan.domain),
                        expected_minions,
                    ),
                    None => UserData::Role {
                        role,
                        expected_minions,
                    },
                }
            }
        };
        c.launch(VmSpec {
            name,
            cluster: plan.cluster.clone(),
            role: Some(role),
            user_data,
            kernel_boot: plan.kernel_boot,
            datasource: Datasource::Seed,
        })?;
    }
    let state = State::of(&plan.cluster, &c);
    state.write(state_dir)?;
    Ok((c, state))
}

/// The live stage of every VM of a running cluster.
pub fn stages(c: &Cluster) -> Vec<VmStatus> {
    let mut vms: Vec<VmStatus> = c
        .vms()
        .iter()
        .map(|v| VmStatus {
            name: v.name.clone(),
            role: v.role,
            ip: v.ip.to_string(),
            running: true,
            stage: probe_stage(c.netns(), &c.key.private, v.ip, &v.qemu.serial_log),
            node: None,
        })
        .collect();
    crate::state::add_node_states(c.netns(), &c.key.private, &mut vms);
    vms
}
