//! Deployment, with MAAS's names: Allocated -> Deploying -> Deployed, Failed deployment (the
//! environment's report, or the clock), and release back to Ready.
//!
//! Deploying gives every `auto` link of the machine an address from the address manager (held
//! as AUTO for the machine until release; `static` links keep theirs), then boots the ephemeral
//! environment in deploy mode. The deployed system reads its configuration from a per-machine
//! NoCloud seed whose URL carries a secret of its own (the seed token, stored only hashed).

use std::collections::BTreeSet;
use std::net::IpAddr;

use maas_ipam::{AddressKind, AutoRequest, Ticket};
use maas_net::doc::MachineDoc;
use maas_net::{LinkMode, Mac, Timestamp};
use serde::{Deserialize, Serialize};

use super::lifecycle::state_changed;
use super::records::{Machine, Status};
use super::{State, StateError};
use crate::auth::token::{Token, TokenHash};

/// A machine's deployment: what is being (or was) put on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Deployment {
    /// The OS image's resource key (`debian/amd64/bookworm`).
    pub(crate) image: String,
    /// The user data handed to cloud-init, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user_data: Option<String>,
    /// When the deployment started.
    pub(crate) started: Timestamp,
    /// When a deployment under way fails if its environment has not reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deadline: Option<Timestamp>,
    /// The hash of the seed token, stored as user tokens are; the token itself is never kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) seed_hash: Option<TokenHash>,
}

/// How a deployment ended, as the environment said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DeployOutcome {
    /// The image is on the disk.
    Deployed,
    /// It failed, with the reason.
    Failed(String),
}

impl State {
    /// Starts deploying `mac` (Allocated, or Failed deployment to retry) with `image`: gives
    /// its `auto` links their addresses, checks that its network configuration renders, and
    /// sets it Deploying until `deadline`. Nothing changes on refusal.
    pub(crate) fn deploy(
        &self,
        mac: Mac,
        image: String,
        user_data: Option<String>,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine(mac)?.clone();
        if !matches!(machine.status, Status::Allocated | Status::FailedDeployment) {
            return Err(StateError::Conflict(format!(
                "machine {mac} is {}: only an allocated machine can be deployed",
                machine.status.as_str()
            )));
        }
        let doc = match machine.network.clone() {
            Some(doc) => doc,
            None => self
                .ipam
                .read(|ipam| super::network::default_network(ipam.topology(), &machine)),
        };
        let (assigned, _) = self
            .ipam
            .submit(|ipam| Ok(assign_auto(ipam, &doc, mac, &machine.hostname, now)))
            .map_err(StateError::Ipam)?;
        let doc = assigned?;
        let entry = memory.machine_mut(mac)?;
        entry.network = Some(doc);
        entry.status = Status::Deploying;
        entry.deployment = Some(Deployment {
            image: image.clone(),
            user_data,
            started: now,
            deadline: Some(deadline),
            seed_hash: None,
        });
        let out = entry.clone();
        let changes = state_changed(&mut memory, &out, now, "deploying", Some(image))?;
        Ok((out, self.commit(changes)?))
    }

    /// Ends the deployment of `mac` as its environment reported: Deployed, or Failed
    /// deployment. A machine that is not deploying is refused and nothing changes.
    pub(crate) fn deployment_reported(
        &self,
        mac: Mac,
        outcome: DeployOutcome,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine_mut(mac)?;
        if machine.status != Status::Deploying {
            return Err(StateError::Conflict(format!(
                "machine {mac} is {}, not deploying",
                machine.status.as_str()
            )));
        }
        if let Some(d) = &mut machine.deployment {
            d.deadline = None;
        }
        let (kind, detail) = match outcome {
            DeployOutcome::Deployed => {
                machine.status = Status::Deployed;
                ("deployed", None)
            }
            DeployOutcome::Failed(why) => {
                machine.status = Status::FailedDeployment;
                ("deployment_failed", Some(why))
            }
        };
        let out = machine.clone();
        let changes = state_changed(&mut memory, &out, now, kind, detail)?;
        Ok((out, self.commit(changes)?))
    }

    /// Fails every deployment whose deadline has passed; the machines and the ticket.
    pub(crate) fn deployment_overdue(
        &self,
        now: Timestamp,
    ) -> Result<(Vec<Machine>, Option<Ticket>), StateError> {
        let overdue: Vec<Mac> = self
            .lock()
            .machines
            .values()
            .filter(|m| {
                m.status == Status::Deploying
                    && m.deployment
                        .as_ref()
                        .and_then(|d| d.deadline)
                        .is_some_and(|d| d <= now)
            })
            .map(|m| m.mac)
            .collect();
        let mut failed = Vec::new();
        let mut last = None;
        for mac in overdue {
            let why = "the ephemeral environment did not report in time".to_string();
            match self.deployment_reported(mac, DeployOutcome::Failed(why), now) {
                Ok((m, t)) => {
                    failed.push(m);
                    last = Some(t);
                }
                Err(StateError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((failed, last))
    }

    /// Marks `mac` Releasing (from Allocated, Deploying, Deployed or Failed deployment), the
    /// step during which it is powered off.
    pub(crate) fn releasing(
        &self,
        mac: Mac,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine_mut(mac)?;
        if !matches!(
            machine.status,
            Status::Allocated
                | Status::Deploying
                | Status::Deployed
                | Status::FailedDeployment
                | Status::Releasing
        ) {
            return Err(StateError::Conflict(format!(
                "machine {mac} is {}: only an allocated or deployed machine can be released",
                machine.status.as_str()
            )));
        }
        machine.status = Status::Releasing;
        let out = machine.clone();
        let changes = state_changed(&mut memory, &out, now, "releasing", None)?;
        Ok((out, self.commit(changes)?))
    }

    /// Ends a release: the addresses the deployment took (AUTO) go back to the pool, the
    /// deployment and its seed are forgotten, and the machine is Ready.
    pub(crate) fn released(
        &self,
        mac: Mac,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine(mac)?.clone();
        if machine.status != Status::Releasing {
            return Err(StateError::Conflict(format!(
                "machine {mac} is {}, not releasing",
                machine.status.as_str()
            )));
        }
        let mut doc = machine.network.clone();
        let auto: BTreeSet<IpAddr> = doc
            .iter()
            .flat_map(|d| &d.interfaces)
            .flat_map(|i| &i.links)
            .filter(|l| l.mode == LinkMode::Auto)
            .filter_map(|l| l.ip)
            .collect();
        // The commit below covers these changes too.
        let (_, _queued) = self
            .ipam
            .submit(|ipam| {
                // Whatever AUTO address the machine holds, listed on a link or not.
                let held: Vec<IpAddr> = ipam
                    .records()
                    .filter(|r| r.kind == AddressKind::Auto && r.mac == Some(mac))
                    .map(|r| r.ip)
                    .chain(auto.iter().copied())
                    .collect();
                for ip in held {
                    if ipam.record(ip).is_some_and(|r| r.mac == Some(mac)) {
                        let _ = ipam.release(ip);
                    }
                }
                Ok(())
            })
            .map_err(StateError::Ipam)?;
        if let Some(d) = &mut doc {
            for l in d.interfaces.iter_mut().flat_map(|i| &mut i.links) {
                if l.mode == LinkMode::Auto {
                    l.ip = None;
                }
            }
        }
        let entry = memory.machine_mut(mac)?;
        entry.network = doc;
        entry.deployment = None;
        entry.owner = None;
        entry.status = Status::Ready;
        let out = entry.clone();
        let changes = state_changed(&mut memory, &out, now, "released", None)?;
        Ok((out, self.commit(changes)?))
    }

    /// A fresh seed token for `mac`'s deployment (the one before stops working); the token's
    /// text goes into the deployed system's datasource configuration.
    pub(crate) fn new_seed(&self, mac: Mac) -> Result<(Token, Ticket), StateError> {
        let token = Token::generate().map_err(|_| StateError::Random)?;
        let mut memory = self.lock();
        let machine = memory.machine_mut(mac)?;
        let Some(deployment) = machine.deployment.as_mut() else {
            return Err(StateError::Conflict(format!(
                "machine {mac} is not deploying"
            )));
        };
        deployment.seed_hash = Some(token.hash());
        let out = machine.clone();
        let ticket = self.commit(vec![super::store::Change::PutMachine(Box::new(out))])?;
        Ok((token, ticket))
    }

    /// The machine whose current seed token `token` is (deploying or deployed), if any.
    pub(crate) fn seed_owner(&self, token: &Token) -> Option<Machine> {
        self.lock()
            .machines
            .values()
            .filter(|m| matches!(m.status, Status::Deploying | Status::Deployed))
            .find(|m| {
                m.deployment
                    .as_ref()
                    .and_then(|d| d.seed_hash)
                    .is_some_and(|h| h.matches(token))
            })
            .cloned()
    }
}

/// Gives back what an assignment took, and the refusal.
fn fail(ipam: &mut maas_ipam::Ipam, taken: &[IpAddr], why: String) -> StateError {
    for ip in taken {
        let _ = ipam.release(*ip);
    }
    StateError::Invalid(why)
}

/// `doc` with every `auto` link that has no address given the next AUTO address of its
/// subnet, held for `mac`. All or nothing: on a refusal, what was taken is given back.
fn assign_auto(
    ipam: &mut maas_ipam::Ipam,
    doc: &MachineDoc,
    mac: Mac,
    hostname: &str,
    now: Timestamp,
) -> Result<MachineDoc, StateError> {
    let mut out = doc.clone();
    let mut taken: Vec<IpAddr> = Vec::new();
    for link in out.interfaces.iter_mut().flat_map(|i| &mut i.links) {
        if link.mode != LinkMode::Auto {
            continue;
        }
        if let Some(ip) = link.ip
            && ipam.record(ip).is_some_and(|r| r.mac == Some(mac))
        {
            continue;
        }
        let Some(cidr) = link.subnet else { continue };
        let Some(subnet) = ipam.topology().subnet_by_cidr(cidr) else {
            return Err(fail(ipam, &taken, format!("subnet {cidr} does not exist")));
        };
        let mut request = AutoRequest::new().mac(mac);
        request.owner = Some(hostname.to_owned());
        match ipam.allocate(subnet, &request, now) {
            Ok(ips) if !ips.is_empty() => {
                link.ip = Some(ips[0]);
                taken.push(ips[0]);
            }
            Ok(_) => return Err(fail(ipam, &taken, format!("no address left in {cidr}"))),
            Err(e) => return Err(fail(ipam, &taken, e.to_string())),
        }
    }
    Ok(out)
}
