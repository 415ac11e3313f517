//! nginx as the reference reverse proxy: a generated config in a temp dir, run in the foreground
//! (`daemon off`) as a child the bench owns.

use crate::procs::{self, Guard};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A running nginx that proxies everything to one backend.
pub struct Nginx {
    _guard: Guard,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// The config: `workers` processes (the bench passes the core count, the same number of threads
/// llamactl's runtime gets), keep-alive to the upstream as a tuned deployment would have it, no
/// buffering (llamactl streams, so nginx must too for a fair comparison), no access log. Each
/// worker may use every descriptor the hard limit allows (`worker_rlimit_nofile`, nginx's own way
/// of raising its soft limit) and hold 16,384 connections: a proxied stream takes two.
fn config(dir: &Path, listen: SocketAddr, upstream: SocketAddr, workers: usize) -> String {
    let d = dir.display();
    let open_files = crate::open_files::hard().unwrap_or(65536).min(1 << 20);
    format!(
        "daemon off;
worker_processes {workers};
worker_rlimit_nofile {open_files};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    upstream backend {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"
    )
}

impl Nginx {
    /// Starts `nginx` (the executable) in `dir`, in front of `upstream`.
    pub fn start(nginx: &str, dir: &Path, upstream: SocketAddr, workers: usize) -> Nginx {
        std::fs::create_dir_all(dir).expect("create nginx dir");
        let listen: SocketAddr = format!("127.0.0.1:{}", procs::free_port())
            .parse()
            .expect("loopback address");
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, listen, upstream, workers)).expect("write nginx.conf");
        let mut cmd = procs::quiet(nginx);
        // -e: the startup error log too goes to the temp dir, not /var/log/nginx.
        cmd.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf);
        let mut guard = Guard::spawn("nginx", cmd, Duration::from_secs(10));
        if !procs::wait_listening(listen, Duration::from_secs(10)) || !guard.alive() {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx did not start on {listen}:\n{log}");
        }
        Nginx {
            _guard: guard,
            addr: listen,
        }
    }
}
