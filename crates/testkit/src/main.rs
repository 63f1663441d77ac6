//! `qdrant-tower-testkit serve`: the testkit's embedded Qdrant-compatible gRPC server as a
//! standalone process, for clients in other languages or other processes.
//!
//! ```text
//! cargo run -p qdrant-tower-testkit -- serve --port 6334 --data ./qdrant-data
//! ```
//!
//! It prints the address it listens on, serves until SIGINT (Ctrl-C) or SIGTERM, then stops
//! gracefully: open calls finish, every collection is flushed to disk. With `--data`, a later
//! `serve` on the same directory finds every collection, point and alias again; without it the
//! data lives in a temporary directory removed on exit.
//!
//! `--api-key KEY` (or Qdrant's `QDRANT__SERVICE__API_KEY` variable) makes every call but the
//! health check carry the key, in `api-key` or `authorization: Bearer`, and
//! `--read-only-api-key KEY` (`QDRANT__SERVICE__READ_ONLY_API_KEY`) adds a key for reads only,
//! answered as Qdrant answers them.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use qdrant_tower_testkit::TestServer;

const USAGE: &str = "\
usage: qdrant-tower-testkit serve [--host ADDR] [--port PORT] [--data DIR] [--search-threads N]
                                 [--api-key KEY] [--read-only-api-key KEY]

Serves Qdrant's gRPC API (collections, points, snapshots) on an embedded qdrant-edge engine.

options:
  --host ADDR               address to listen on (default 127.0.0.1; without an API key anyone
                            who reaches it may do anything: keep it local)
  --port PORT               port to listen on (default 6334, Qdrant's gRPC port; 0 picks a free
                            one)
  --data DIR                keep collections in DIR across restarts (default: a temporary
                            directory, removed on exit)
  --search-threads N        search threads per collection (default 1)
  --api-key KEY             require KEY on every call but the health check, in an `api-key`
                            header or `authorization: Bearer KEY` (default: the
                            QDRANT__SERVICE__API_KEY variable, else no key)
  --read-only-api-key KEY   also accept KEY, for reads only (default: the
                            QDRANT__SERVICE__READ_ONLY_API_KEY variable, else none)
  -h, --help                print this help";

/// A key from the command line: never printed.
#[derive(PartialEq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct Options {
    host: IpAddr,
    port: u16,
    data: Option<PathBuf>,
    search_threads: usize,
    api_key: Option<Secret>,
    read_only_api_key: Option<Secret>,
}

/// Parses `serve [options]`; `Ok(None)` means help was asked for.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Options>, String> {
    let mut args = args.into_iter();
    match args.next().as_deref() {
        Some("serve") => {}
        Some("-h" | "--help") => return Ok(None),
        Some(other) => return Err(format!("unknown command `{other}` (expected `serve`)")),
        None => return Err("missing command `serve`".to_owned()),
    }
    let mut options = Options {
        host: IpAddr::from([127, 0, 0, 1]),
        port: 6334,
        data: None,
        search_threads: 1,
        api_key: None,
        read_only_api_key: None,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("`{flag}` needs a value ({what})"))
        };
        match flag.as_str() {
            "--host" => {
                let host = value("an IP address")?;
                options.host = host
                    .parse()
                    .map_err(|_| format!("`--host {host}`: not an IP address"))?;
            }
            "--port" => {
                let port = value("a port number")?;
                options.port = port
                    .parse()
                    .map_err(|_| format!("`--port {port}`: not a port number (0 to 65535)"))?;
            }
            "--data" => {
                let dir = value("a directory")?;
                if dir.is_empty() {
                    return Err("`--data` needs a non-empty directory".to_owned());
                }
                options.data = Some(PathBuf::from(dir));
            }
            "--search-threads" => {
                let threads = value("a number")?;
                options.search_threads = threads
                    .parse()
                    .map_err(|_| format!("`--search-threads {threads}`: not a number"))?;
            }
            "--api-key" | "--read-only-api-key" => {
                let key = value("a key")?;
                if key.is_empty() {
                    return Err(format!("`{flag}` needs a non-empty key"));
                }
                let slot = match flag.as_str() {
                    "--api-key" => &mut options.api_key,
                    _ => &mut options.read_only_api_key,
                };
                *slot = Some(Secret(key));
            }
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(Some(options))
}

/// Qdrant's variables for the keys, used when the command line gives none.
fn keys_from_env(options: &mut Options) {
    let from_env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|key| !key.is_empty())
            .map(Secret)
    };
    if options.api_key.is_none() {
        options.api_key = from_env("QDRANT__SERVICE__API_KEY");
    }
    if options.read_only_api_key.is_none() {
        options.read_only_api_key = from_env("QDRANT__SERVICE__READ_ONLY_API_KEY");
    }
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(mut options)) => {
            keys_from_env(&mut options);
            options
        }
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(options))
}

async fn serve(options: Options) -> ExitCode {
    // Nobody reads a standalone server's call log: do not let it grow with every call.
    let mut builder = TestServer::builder()
        .host(options.host)
        .port(options.port)
        .search_threads(options.search_threads)
        .record_calls(false);
    if let Some(dir) = &options.data {
        builder = builder.data_dir(dir);
    }
    if let Some(Secret(key)) = &options.api_key {
        builder = builder.api_key(key);
    }
    if let Some(Secret(key)) = &options.read_only_api_key {
        builder = builder.read_only_api_key(key);
    }
    let server = match builder.start().await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("qdrant-tower-testkit listening on {} (gRPC)", server.url());
    let keys = match (&options.api_key, &options.read_only_api_key) {
        (None, None) => "none (every call is allowed)",
        (Some(_), None) => "required",
        (Some(_), Some(_)) => "required (plus a read-only key)",
        (None, Some(_)) => "read-only key only (no call may write)",
    };
    println!("API key: {keys}");
    match &options.data {
        Some(_) => println!("data directory: {}", server.data_dir().display()),
        None => println!(
            "data directory: {} (temporary, removed on exit)",
            server.data_dir().display()
        ),
    }

    let signal = match stop_signal().await {
        Ok(signal) => signal,
        Err(err) => {
            eprintln!("error: cannot listen for signals: {err}");
            server.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    println!("received {signal}, stopping");
    server.shutdown().await;
    println!("stopped");
    ExitCode::SUCCESS
}

/// Waits for SIGINT (Ctrl-C) or, on Unix, SIGTERM, and names it.
async fn stop_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = interrupt.recv() => Ok("SIGINT"),
            _ = terminate.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn serve_takes_host_port_data_and_threads() {
        let options = parse(args(
            "serve --port 7000 --data /tmp/q --host 0.0.0.0 --search-threads=3",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            options,
            Options {
                host: IpAddr::from([0, 0, 0, 0]),
                port: 7000,
                data: Some(PathBuf::from("/tmp/q")),
                search_threads: 3,
                api_key: None,
                read_only_api_key: None,
            }
        );
    }

    #[test]
    fn api_keys_are_taken_and_never_printed() {
        let options = parse(args(
            "serve --api-key rw-secret --read-only-api-key=ro-secret",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(options.api_key, Some(Secret("rw-secret".to_owned())));
        assert_eq!(
            options.read_only_api_key,
            Some(Secret("ro-secret".to_owned()))
        );
        let debug = format!("{options:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert_eq!(
            parse(args("serve --api-key")).unwrap_err(),
            "`--api-key` needs a value (a key)"
        );
        assert_eq!(
            parse(args("serve --api-key=")).unwrap_err(),
            "`--api-key` needs a non-empty key"
        );
    }

    #[test]
    fn defaults_are_qdrant_grpc_port_on_loopback() {
        let options = parse(args("serve")).unwrap().unwrap();
        assert_eq!(options.port, 6334);
        assert_eq!(options.host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(options.data, None);
    }

    #[test]
    fn bad_arguments_are_named() {
        assert_eq!(
            parse(args("serve --port 70000")).unwrap_err(),
            "`--port 70000`: not a port number (0 to 65535)"
        );
        assert_eq!(
            parse(args("serve --verbose")).unwrap_err(),
            "unknown argument `--verbose`"
        );
        assert_eq!(
            parse(args("serve --data")).unwrap_err(),
            "`--data` needs a value (a directory)"
        );
        assert_eq!(
            parse(args("start")).unwrap_err(),
            "unknown command `start` (expected `serve`)"
        );
        assert_eq!(parse(args("")).unwrap_err(), "missing command `serve`");
        assert_eq!(parse(args("serve --help")).unwrap(), None);
    }
}
