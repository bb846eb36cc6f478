use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = trickle_edge::cli::Cli::parse();
    trickle_edge::logging::init(cli.default_log_filter());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(trickle_edge::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once: library errors often name their cause in
            // their own message too.
            let e: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!("error: {}", trickle_edge::trickle::client::error_chain(e));
            std::process::ExitCode::FAILURE
        }
    }
}
