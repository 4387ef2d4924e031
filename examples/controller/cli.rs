//! `controller cli ...`: the command line over the HTTP JSON API.
//!
//! ```text
//! controller cli [--api URL] machines | machine MAC | add-machine MAC [--hostname H]
//!     [--zone Z] [--architecture A] | delete-machine MAC | accept MAC | subnets |
//!     statistics SUBNET-ID | ipranges | leases | ipaddresses | discoveries | racks |
//!     reserve (--ip IP | --subnet ID)
//!     [--sticky] [--mac MAC] [--owner TEXT] | release IP | zones | metrics | power MAC |
//!     power-on MAC | power-off MAC | power-cycle MAC | boot MAC DEVICE [--persistent]
//!     [--mode M]
//! ```
//!
//! Prints the API's answer (JSON, pretty) and exits 0, or prints its error and exits 1.

use std::process::ExitCode;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

const USAGE: &str = "usage: controller cli [--api URL] COMMAND
commands:
  machines                      list machines
  machine MAC                   show one machine
  add-machine MAC [--hostname H] [--zone Z] [--architecture A]
  delete-machine MAC            remove a machine
  accept MAC                    accept an enlisted machine
  subnets                       subnets with statistics
  statistics SUBNET-ID          one subnet's statistics, ranges and suggestions
  ipranges | leases | ipaddresses | zones | discoveries | racks | metrics
  reserve (--ip IP | --subnet ID) [--sticky] [--mac MAC] [--owner TEXT]
  release IP                    release a reservation
  power MAC                     ask the machine's BMC for its power state
  power-on MAC | power-off MAC | power-cycle MAC
  boot MAC DEVICE [--persistent] [--mode auto|legacy|efi]
                                set the boot device (pxe, disk, cdrom, biossetup, none)";

/// Runs the CLI with `args` (after `cli`).
pub(crate) fn main(args: &[String]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A request the command line asks for.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn parse(args: &[String]) -> Result<(String, Call), String> {
    let mut api = "http://127.0.0.1:5240".to_string();
    let mut rest: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--api" {
            api = it.next().ok_or("--api needs a URL")?.clone();
        } else {
            rest.push(a);
        }
    }
    let (command, rest) = rest.split_first().ok_or(USAGE)?;
    let (positional, flags) = split_flags(rest)?;
    let one = |what: &str| -> Result<String, String> {
        match positional.as_slice() {
            [only] => Ok((*only).to_string()),
            _ => Err(format!("{command} needs {what}\n{USAGE}")),
        }
    };
    let get = |path: &str| Call {
        method: Method::GET,
        path: path.to_string(),
        body: None,
    };
    let call = match *command {
        "machines" => get("/api/v1/machines"),
        "subnets" => get("/api/v1/subnets"),
        "ipranges" => get("/api/v1/ipranges"),
        "leases" => get("/api/v1/leases"),
        "ipaddresses" => get("/api/v1/ipaddresses"),
        "zones" => get("/api/v1/zones"),
        "discoveries" => get("/api/v1/discoveries"),
        "racks" => get("/api/v1/racks"),
        "metrics" => get("/metrics"),
        "machine" => get(&format!("/api/v1/machines/{}", one("a MAC")?)),
        "statistics" => get(&format!(
            "/api/v1/subnets/{}/statistics",
            one("a subnet id")?
        )),
        "power" => get(&format!("/api/v1/machines/{}/power", one("a MAC")?)),
        "power-on" | "power-off" | "power-cycle" => Call {
            method: Method::POST,
            path: format!("/api/v1/machines/{}/{command}", one("a MAC")?),
            body: None,
        },
        "boot" => {
            let [mac, device] = positional.as_slice() else {
                return Err(format!("boot needs a MAC and a device\n{USAGE}"));
            };
            let mut body = Map::new();
            body.insert("device".into(), (*device).into());
            for (flag, value) in flags {
                match flag {
                    "--persistent" => {
                        body.insert("persistence".into(), "persistent".into());
                    }
                    "--mode" => {
                        body.insert("mode".into(), value.into());
                    }
                    other => return Err(format!("boot: unknown flag {other}")),
                }
            }
            Call {
                method: Method::POST,
                path: format!("/api/v1/machines/{mac}/boot"),
                body: Some(Value::Object(body)),
            }
        }
        "delete-machine" => Call {
            method: Method::DELETE,
            path: format!("/api/v1/machines/{}", one("a MAC")?),
            body: None,
        },
        "accept" => Call {
            method: Method::POST,
            path: format!("/api/v1/machines/{}/accept", one("a MAC")?),
            body: None,
        },
        "release" => Call {
            method: Method::DELETE,
            path: format!("/api/v1/ipaddresses/{}", one("an IP address")?),
            body: None,
        },
        "add-machine" => {
            let mut body = Map::new();
            body.insert("mac".into(), one("a MAC")?.into());
            for (flag, value) in flags {
                match flag {
                    "--hostname" | "--zone" | "--architecture" => {
                        body.insert(flag.trim_start_matches("--").into(), value.into());
                    }
                    other => return Err(format!("add-machine: unknown flag {other}")),
                }
            }
            Call {
                method: Method::POST,
                path: "/api/v1/machines".into(),
                body: Some(Value::Object(body)),
            }
        }
        "reserve" => {
            if !positional.is_empty() {
                return Err(format!("reserve takes flags only\n{USAGE}"));
            }
            let mut body = Map::new();
            for (flag, value) in flags {
                match flag {
                    "--ip" | "--mac" | "--owner" => {
                        body.insert(flag.trim_start_matches("--").into(), value.into());
                    }
                    "--subnet" => {
                        let id: u32 = value
                            .parse()
                            .map_err(|_| format!("--subnet {value:?} is not a subnet id"))?;
                        body.insert("subnet".into(), id.into());
                    }
                    "--sticky" => {
                        body.insert("kind".into(), "sticky".into());
                    }
                    other => return Err(format!("reserve: unknown flag {other}")),
                }
            }
            Call {
                method: Method::POST,
                path: "/api/v1/ipaddresses".into(),
                body: Some(Value::Object(body)),
            }
        }
        other => return Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    Ok((api.trim_end_matches('/').to_string(), call))
}

/// Positional words, and `--flag value` pairs.
type Split<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// Splits words into positional ones and `--flag value` pairs (`--sticky` and
/// `--persistent` take no value).
fn split_flags<'a>(args: &[&'a str]) -> Result<Split<'a>, String> {
    let mut positional = Vec::new();
    let mut flags = Vec::new();
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        if a == "--sticky" || a == "--persistent" {
            flags.push((a, ""));
        } else if a.starts_with("--") {
            let value = it.next().ok_or_else(|| format!("{a} needs a value"))?;
            flags.push((a, *value));
        } else {
            positional.push(a);
        }
    }
    Ok((positional, flags))
}

async fn run(args: &[String]) -> Result<String, String> {
    let (api, call) = parse(args)?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri = format!("{api}{}", call.path);
    let mut request = Request::builder().method(call.method).uri(&uri);
    let body = match &call.body {
        Some(b) => {
            request = request.header("content-type", "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(body))
        .map_err(|e| format!("{uri}: {e}"))?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .map_err(|_| format!("{uri}: no answer within 30 s"))?
            .map_err(|e| format!("{uri}: {e} (is the controller running?)"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{uri}: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    let pretty = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    if status.is_success() {
        Ok(pretty.unwrap_or_else(|| text.trim_end().to_string()))
    } else {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| text.into_owned());
        Err(format!("{status}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_become_requests() {
        let (api, call) = parse(&args(
            "--api http://10.77.0.1:5240/ machine 52:54:00:77:00:01",
        ))
        .unwrap();
        assert_eq!(api, "http://10.77.0.1:5240");
        assert_eq!(
            (call.method, call.path.as_str()),
            (Method::GET, "/api/v1/machines/52:54:00:77:00:01")
        );
        let (_, call) =
            parse(&args("reserve --subnet 0 --sticky --mac 52:54:00:77:00:02")).unwrap();
        assert_eq!(call.method, Method::POST);
        assert_eq!(
            call.body,
            Some(json!({ "subnet": 0, "kind": "sticky", "mac": "52:54:00:77:00:02" }))
        );
        let (_, call) = parse(&args("add-machine 52:54:00:77:00:03 --hostname n3")).unwrap();
        assert_eq!(
            call.body,
            Some(json!({ "mac": "52:54:00:77:00:03", "hostname": "n3" }))
        );
        for bad in [
            "",
            "machine",
            "frobnicate",
            "reserve --subnet x",
            "add-machine m --colour red",
            "release",
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }
}
