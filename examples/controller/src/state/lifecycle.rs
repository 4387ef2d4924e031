//! A machine's life cycle past enlistment, with MAAS's names: New, Commissioning, Ready,
//! Failed commissioning. Every change of state revokes the credential the machine was given
//! for its previous boot and hands it a fresh one.

use maas_ipam::Ticket;
use maas_net::{Mac, Timestamp};

use super::records::{Hardware, Machine, Status};
use super::store::Change;
use super::{State, StateError, auth, event, push_event};

/// How a commissioning ended, as the agent (or the clock) said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The hardware the agent found.
    Found(Box<Hardware>),
    /// The agent's reason for failing.
    Failed(String),
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
        let machine = memory
            .machines
            .get_mut(&mac)
            .ok_or(StateError::NoMachine(mac))?;
        if machine.status == Status::Commissioning {
            return Err(StateError::Conflict(format!(
                "machine {mac} is commissioning already"
            )));
        }
        machine.status = Status::Commissioning;
        machine.commissioning_deadline = Some(deadline);
        let out = machine.clone();
        let (token, token_change) = auth::new_machine_token(mac)?;
        memory.access.set_machine_token(mac, token);
        let e = event(mac, now, "commissioning", None);
        push_event(&mut memory, e.clone());
        let ticket = self.commit(vec![
            Change::PutMachine(Box::new(out.clone())),
            token_change,
            Change::AddEvent(e),
        ])?;
        Ok((out, ticket))
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
        let machine = memory
            .machines
            .get_mut(&mac)
            .ok_or(StateError::NoMachine(mac))?;
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
        let (token, token_change) = auth::new_machine_token(mac)?;
        memory.access.set_machine_token(mac, token);
        let e = event(mac, now, kind, Some(detail));
        push_event(&mut memory, e.clone());
        let ticket = self.commit(vec![
            Change::PutMachine(Box::new(out.clone())),
            token_change,
            Change::AddEvent(e),
        ])?;
        Ok((out, ticket))
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
            let (token, token_change) = auth::new_machine_token(mac)?;
            memory.access.set_machine_token(mac, token);
            let e = event(
                mac,
                now,
                "commissioning_failed",
                Some("the ephemeral environment did not report in time".into()),
            );
            push_event(&mut memory, e.clone());
            changes.push(Change::PutMachine(Box::new(out.clone())));
            changes.push(token_change);
            changes.push(Change::AddEvent(e));
            failed.push(out);
        }
        if changes.is_empty() {
            return Ok((failed, None));
        }
        let ticket = self.commit(changes)?;
        Ok((failed, Some(ticket)))
    }
}
