//! `peapod`: the human CLI for one node (images now; pods in a later issue).

fn main() {
    todo!("peapod CLI")
}
