//! The web container the stream tests forward to: busybox httpd in a test pod.

use peapod_tests::pod::TestPod;

/// The port busybox httpd serves on inside the pod.
pub const PORT: u16 = 8080;

/// Runs container `web`: busybox httpd serving "hello from web" on the pod's loopback,
/// and waits until it answers.
#[track_caller]
pub fn run_web(pod: &mut TestPod) {
    pod.run(
        "web",
        &format!(
            "mkdir -p /tmp/www && echo hello from web > /tmp/www/index.html && \
             exec httpd -f -p 127.0.0.1:{PORT} -h /tmp/www"
        ),
    );
    pod.wait_for(
        "web",
        &format!("wget -q -O /dev/null http://127.0.0.1:{PORT}/"),
    );
}
