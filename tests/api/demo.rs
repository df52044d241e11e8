//! `throughcare demo` runs end to end (the README's first command).

#[tokio::test]
async fn the_demo_runs_a_release_end_to_end() {
    throughcare::demo::run()
        .await
        .expect("the demo completes every step");
}
