//! A machine's life cycle past enlistment, with MAAS's names: New, Commissioning, Ready,
//! Failed commissioning. Every change of state revokes the credential the machine was given
//! for its previous boot and hands it a fresh one.

use maas_ipam::Ticket;
use maas_net::{Mac, Timestamp};

use super::records::{Hardware, Machine, Status};
use super::store::Change;
use super::{Memory, State, StateError, auth, event, push_event};

/// How a commissioning ended, as the agent (or the clock) said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The hardware the agent found.
    Found(Box<Hardware>),
    /// The agent's reason for failing.
    Failed(String),
}

/// What a change of `machine`'s state (already made in memory) stores: the machine, a fresh
/// credential in place of the one handed out before (which stops working), and the event.
pub(super) fn state_changed(
    memory: &mut Memory,
    machine: &Machine,
    now: Timestamp,
    kind: &str,
    detail: Option<String>,
) -> Result<Vec<Change>, StateError> {
    let (token, token_change) = auth::new_machine_token(machine.mac)?;
    memory.access.set_machine_token(machine.mac, token);
    let e = event(machine.mac, now, kind, detail);
    push_event(memory, e.clone());
    Ok(vec![
        Change::PutMachine(Box::new(machine.clone())),
        token_change,
        Change::AddEvent(e),
    ])
}

impl State {
    /// Starts commissioning `mac` (from New, Ready or Failed commissioning): it boots the
    /// ephemeral environment next, which must report by `deadline`.
    pub(crate) fn commission(
        &self,
        mac: Mac,
        deadline: Timestamp,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine_mut(mac)?;
        if machine.status == Status::Commissioning {
            return Err(StateError::Conflict(format!(
                "machine {mac} is commissioning already"
            )));
        }
        machine.status = Status::Commissioning;
        machine.commissioning_deadline = Some(deadline);
        let out = machine.clone();
        let changes = state_changed(&mut memory, &out, now, "commissioning", None)?;
        Ok((out, self.commit(changes)?))
    }

    /// Ends the commissioning of `mac` as its agent reported: Ready with the hardware found
    /// (replacing what an earlier commissioning found), or Failed commissioning. A machine that
    /// is not commissioning is refused and nothing changes.
    pub(crate) fn commissioning_reported(
        &self,
        mac: Mac,
        outcome: Outcome,
        now: Timestamp,
    ) -> Result<(Machine, Ticket), StateError> {
        let mut memory = self.lock();
        let machine = memory.machine_mut(mac)?;
        if machine.status != Status::Commissioning {
            return Err(StateError::Conflict(format!(
                "machine {mac} is {}, not commissioning",
                machine.status.as_str()
            )));
        }
        machine.commissioning_deadline = None;
        let (kind, detail) = match outcome {
            Outcome::Found(hardware) => {
                let summary = format!(
                    "{} CPUs, {} bytes of memory, {} interfaces, {} disks, {}",
                    hardware.cpu_count,
                    hardware.memory_bytes,
                    hardware.interfaces.len(),
                    hardware.disks.len(),
                    hardware.firmware
                );
                if !hardware.architecture.is_empty() {
                    machine.architecture = Some(format!("{}/generic", hardware.architecture));
                }
                let network = self.ipam.read(|ipam| {
                    super::network::commissioned_network(
                        ipam.topology(),
                        machine,
                        &hardware,
                        machine.network.as_ref(),
                    )
                });
                machine.network = Some(network);
                machine.hardware = Some(*hardware);
                machine.status = Status::Ready;
                ("commissioned", summary)
            }
            Outcome::Failed(why) => {
                machine.status = Status::FailedCommissioning;
                ("commissioning_failed", why)
            }
        };
        let out = machine.clone();
        let changes = state_changed(&mut memory, &out, now, kind, Some(detail))?;
        Ok((out, self.commit(changes)?))
    }

    /// Fails every commissioning whose deadline has passed; the machines and the ticket.
    pub(crate) fn commissioning_overdue(
        &self,
        now: Timestamp,
    ) -> Result<(Vec<Machine>, Option<Ticket>), StateError> {
        let mut memory = self.lock();
        let overdue: Vec<Mac> = memory
            .machines
            .values()
            .filter(|m| {
                m.status == Status::Commissioning
                    && m.commissioning_deadline.is_some_and(|d| d <= now)
            })
            .map(|m| m.mac)
            .collect();
        let mut changes = Vec::new();
        let mut failed = Vec::new();
        for mac in overdue {
            let Some(machine) = memory.machines.get_mut(&mac) else {
                continue;
            };
            machine.status = Status::FailedCommissioning;
            machine.commissioning_deadline = None;
            let out = machine.clone();
            changes.extend(state_changed(
                &mut memory,
                &out,
                now,
                "commissioning_failed",
                Some("the ephemeral environment did not report in time".into()),
            )?);
            failed.push(out);
        }
        if changes.is_empty() {
            return Ok((failed, None));
        }
        let ticket = self.commit(changes)?;
        Ok((failed, Some(ticket)))
    }
}
