//! `promolens standin`: a local stand-in for WeChat's code API (for trying promolens and for
//! tests: the real one is out of reach here).

use std::net::SocketAddr;
use std::time::Duration;

use promolens::codes::standin::{StandinConfig, serve};

#[derive(clap::Args)]
pub struct StandinArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A+C codes per AppID before errcode 45029.
    #[arg(long, default_value_t = 100_000)]
    quota: u32,
    /// Access token lifetime, seconds.
    #[arg(long, default_value_t = 7200)]
    token_seconds: u64,
}

pub async fn run(args: StandinArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let config = StandinConfig {
        quota: args.quota,
        token_ttl: Duration::from_secs(args.token_seconds),
        ..StandinConfig::default()
    };
    let (app_id, secret) = config.apps[0].clone();
    println!(
        "WeChat stand-in listening on http://{} (AppID {app_id}, AppSecret {secret})",
        listener.local_addr()?
    );
    serve(listener, config).await?;
    Ok(())
}
