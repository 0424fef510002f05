//! The cgroup v2 device filter: the container's device rules compiled into an eBPF program
//! of type `BPF_PROG_TYPE_CGROUP_DEVICE`, as plain instructions (no I/O; [`super::bpf`]
//! loads and attaches them).
//!
//! # Semantics
//! The last matching rule wins, as in runc's filter, refined per access bit so that the
//! result is the one a v1 devices cgroup gives for the same rules written in order: for each
//! access the kernel asks about (read, write, mknod), the last rule that matches the device
//! and names that access decides. A request is allowed when every access it asks for is
//! allowed; an access no rule speaks about is denied.
//!
//! # Program
//! The program scans the rules from the last to the first with the accesses still undecided
//! in R3. An allow rule that matches the device clears its accesses from R3 and allows once
//! none is left; a deny rule that matches the device and one undecided access denies. Rules
//! before the last rule that matches everything can never decide and are left out.

use super::devices::DeviceRule;

/// `struct bpf_cgroup_dev_ctx` field offsets: `access_type` (device type in the low 16 bits,
/// access in the high 16), `major`, `minor`.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

/// `BPF_DEVCG_DEV_*`: the device type the kernel reports.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// `BPF_DEVCG_ACC_*`: the accesses the kernel reports.
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// Registers: R0 result, R1 context (then scratch), R2 type, R3 undecided accesses,
/// R4 major, R5 minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// Opcodes (class | operation | source), from `linux/bpf_common.h` and `linux/bpf.h`.
const LDX_MEM_W: u8 = 0x61;
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP32_JNE_K: u8 = 0x56;
const JMP32_JEQ_K: u8 = 0x16;
const JMP_EXIT: u8 = 0x95;

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register in the low nibble, source register in the high one.
    pub regs: u8,
    /// Memory offset, or jump distance in instructions after the next one.
    pub off: i16,
    /// Immediate operand.
    pub imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    fn load_word(dst: u8, src: u8, off: i16) -> Insn {
        Insn::new(LDX_MEM_W, dst, src, off, 0)
    }

    fn and(dst: u8, imm: i32) -> Insn {
        Insn::new(ALU32_AND_K, dst, 0, 0, imm)
    }

    fn mov(dst: u8, imm: i32) -> Insn {
        Insn::new(ALU32_MOV_K, dst, 0, 0, imm)
    }

    fn exit() -> Insn {
        Insn::new(JMP_EXIT, 0, 0, 0, 0)
    }
}

/// Why a rule cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A major or minor number outside what the kernel's context can hold.
    #[error("device rule {rule:?}: {what} number {number} is outside 0 to 4294967295")]
    Number {
        /// The rule, as a v1 line.
        rule: String,
        /// `major` or `minor`.
        what: &'static str,
        /// The number.
        number: i64,
    },
}

/// Compile `rules` (in config order, see [`super::devices::rules`]) into a device filter.
pub fn program(rules: &[DeviceRule]) -> Result<Vec<Insn>, FilterError> {
    let mut insns = vec![
        Insn::load_word(R2, R1, CTX_ACCESS_TYPE),
        Insn::and(R2, 0xffff),
        Insn::load_word(R3, R1, CTX_ACCESS_TYPE),
        Insn::new(ALU32_RSH_K, R3, 0, 0, 16),
        Insn::load_word(R4, R1, CTX_MAJOR),
        Insn::load_word(R5, R1, CTX_MINOR),
    ];
    let live = rules
        .iter()
        .rposition(matches_everything)
        .map_or(rules, |last| &rules[last..]);
    for rule in live.iter().rev() {
        insns.extend(block(rule)?);
    }
    insns.extend([Insn::mov(R0, 0), Insn::exit()]);
    Ok(insns)
}

/// Whether `rule` matches every device and every access, hiding all rules before it.
fn matches_everything(rule: &DeviceRule) -> bool {
    rule.kind == 'a' && rule.major.is_none() && rule.minor.is_none() && access(rule) == ACC_ALL
}

/// The rule's accesses as `BPF_DEVCG_ACC_*` bits; none given means all (as in OCI).
fn access(rule: &DeviceRule) -> i32 {
    if rule.access.is_empty() {
        return ACC_ALL;
    }
    rule.access
        .chars()
        .map(|c| match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        })
        .fold(0, |acc, bit| acc | bit)
}

/// The instructions for one rule; a failed test jumps past the block's end.
fn block(rule: &DeviceRule) -> Result<Vec<Insn>, FilterError> {
    // Tests as (register, value); a None value is no test.
    let number = |n: Option<i64>, what| match n {
        None => Ok(None),
        Some(n) => u32::try_from(n)
            // The kernel compares 32-bit registers: the bit pattern is what matters.
            .map(|n| Some(n as i32))
            .map_err(|_| FilterError::Number {
                rule: rule.v1_line(),
                what,
                number: n,
            }),
    };
    let kind = match rule.kind {
        'b' => Some(DEV_BLOCK),
        'c' => Some(DEV_CHAR),
        _ => None,
    };
    let tests = [
        (R2, kind),
        (R4, number(rule.major, "major")?),
        (R5, number(rule.minor, "minor")?),
    ];
    // Each entry: an instruction, and whether it jumps to the block's end on failure.
    let mut body: Vec<(Insn, bool)> = tests
        .iter()
        .filter_map(|&(reg, value)| value.map(|v| (Insn::new(JMP32_JNE_K, reg, 0, 0, v), true)))
        .collect();
    let access = access(rule);
    let verdict = if rule.allow {
        // Clear the accesses this rule allows; allow once none is left.
        body.push((Insn::and(R3, !access), false));
        body.push((Insn::new(JMP32_JNE_K, R3, 0, 0, 0), true));
        1
    } else {
        // Deny if one of this rule's accesses is still undecided.
        body.push((Insn::new(ALU32_MOV_X, R1, R3, 0, 0), false));
        body.push((Insn::and(R1, access), false));
        body.push((Insn::new(JMP32_JEQ_K, R1, 0, 0, 0), true));
        0
    };
    body.push((Insn::mov(R0, verdict), false));
    body.push((Insn::exit(), false));
    let len = body.len();
    Ok(body
        .into_iter()
        .enumerate()
        .map(|(i, (mut insn, skips))| {
            if skips {
                // Distance from the next instruction to the first one after the block.
                insn.off = (len - i - 1) as i16;
            }
            insn
        })
        .collect())
}

/// Run `program` on one request, as the kernel's verifier-checked interpreter would for
/// the instructions this module emits: 1 allows, 0 denies. For tests of the semantics.
#[cfg(test)]
pub fn run(program: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> i32 {
    let ctx = [(kind as u32) | ((access as u32) << 16), major, minor];
    let mut reg = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let insn = program[pc];
        let (dst, src) = ((insn.regs & 0xf) as usize, (insn.regs >> 4) as usize);
        pc += 1;
        let jump = |taken: bool, pc: &mut usize| {
            if taken {
                *pc = (*pc as isize + insn.off as isize) as usize;
            }
        };
        match insn.code {
            LDX_MEM_W => {
                assert_eq!(src, R1 as usize, "loads are from the context");
                reg[dst] = u64::from(ctx[insn.off as usize / 4]);
            }
            ALU32_AND_K => reg[dst] = u64::from(reg[dst] as u32 & insn.imm as u32),
            ALU32_RSH_K => reg[dst] = u64::from((reg[dst] as u32) >> insn.imm),
            ALU32_MOV_K => reg[dst] = u64::from(insn.imm as u32),
            ALU32_MOV_X => reg[dst] = u64::from(reg[src] as u32),
            JMP32_JNE_K => jump(reg[dst] as u32 != insn.imm as u32, &mut pc),
            JMP32_JEQ_K => jump(reg[dst] as u32 == insn.imm as u32, &mut pc),
            JMP_EXIT => return reg[R0 as usize] as i32,
            code => panic!("unexpected opcode {code:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        kind: char,
        major: Option<i64>,
        minor: Option<i64>,
        a: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: a.to_owned(),
        }
    }

    const NULL: (i32, u32, u32) = (DEV_CHAR, 1, 3);
    const ZERO: (i32, u32, u32) = (DEV_CHAR, 1, 5);
    const SDA: (i32, u32, u32) = (DEV_BLOCK, 8, 0);
    const RW: i32 = ACC_READ | ACC_WRITE;

    fn check(program: &[Insn], (kind, major, minor): (i32, u32, u32), access: i32) -> bool {
        run(program, kind, access, major, minor) == 1
    }

    #[test]
    fn no_rules_deny_everything() {
        let p = program(&[]).unwrap();
        assert_eq!(p.len(), 8, "prologue and default deny");
        assert_eq!(p[6], Insn::mov(R0, 0));
        assert_eq!(p[7], Insn::exit());
        assert!(!check(&p, NULL, ACC_READ));
    }

    #[test]
    fn a_char_rule_compiles_to_type_major_minor_tests_then_the_verdict() {
        let p = program(&[rule(true, 'c', Some(1), Some(3), "rwm")]).unwrap();
        let block = &p[6..p.len() - 2];
        assert_eq!(
            block,
            [
                Insn::new(JMP32_JNE_K, R2, 0, 6, DEV_CHAR),
                Insn::new(JMP32_JNE_K, R4, 0, 5, 1),
                Insn::new(JMP32_JNE_K, R5, 0, 4, 3),
                Insn::and(R3, !ACC_ALL),
                Insn::new(JMP32_JNE_K, R3, 0, 2, 0),
                Insn::mov(R0, 1),
                Insn::exit(),
            ]
        );
        assert_eq!(p[0], Insn::new(LDX_MEM_W, R2, R1, 0, 0));
        assert_eq!(
            p[0].regs, 0x12,
            "src R1 in the high nibble, dst R2 in the low"
        );
        assert!(check(&p, NULL, RW));
        assert!(!check(&p, ZERO, ACC_READ));
        assert!(!check(&p, (DEV_BLOCK, 1, 3), ACC_READ));
    }

    #[test]
    fn wildcards_test_nothing_and_deny_blocks_test_the_undecided_accesses() {
        let p = program(&[rule(false, 'a', None, Some(7), "w")]).unwrap();
        let block = &p[6..p.len() - 2];
        assert_eq!(
            block,
            [
                Insn::new(JMP32_JNE_K, R5, 0, 5, 7),
                Insn::new(ALU32_MOV_X, R1, R3, 0, 0),
                Insn::and(R1, ACC_WRITE),
                Insn::new(JMP32_JEQ_K, R1, 0, 2, 0),
                Insn::mov(R0, 0),
                Insn::exit(),
            ]
        );
    }

    #[test]
    fn the_last_matching_rule_wins() {
        let rules = [
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), None, "rwm"),
            rule(false, 'c', Some(1), Some(5), "rwm"),
        ];
        let p = program(&rules).unwrap();
        assert!(check(&p, NULL, RW));
        assert!(!check(&p, ZERO, ACC_READ));
        assert!(!check(&p, SDA, ACC_READ));
        // Reversed: the broad allow comes last and wins for /dev/zero too.
        let p = program(&[rules[0].clone(), rules[2].clone(), rules[1].clone()]).unwrap();
        assert!(check(&p, ZERO, ACC_READ));
    }

    #[test]
    fn each_access_is_decided_by_the_last_rule_naming_it() {
        let rules = [
            rule(true, 'c', Some(1), Some(3), "rw"),
            rule(false, 'c', Some(1), Some(3), "w"),
        ];
        let p = program(&rules).unwrap();
        assert!(check(&p, NULL, ACC_READ));
        assert!(!check(&p, NULL, ACC_WRITE));
        assert!(!check(&p, NULL, RW), "read is allowed but write is denied");
        assert!(!check(&p, NULL, ACC_MKNOD), "no rule allows mknod");
        let p = program(&[rule(true, 'c', Some(1), Some(3), "r")]).unwrap();
        assert!(!check(&p, NULL, RW), "write is undecided, so denied");
        let p = program(&[
            rule(true, 'c', None, None, "m"),
            rule(true, 'c', Some(1), Some(3), "rw"),
        ])
        .unwrap();
        assert!(check(&p, NULL, ACC_MKNOD | RW), "two allows together");
    }

    #[test]
    fn rules_before_the_last_catch_all_are_left_out() {
        let rules = [
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(5), "rwm"),
        ];
        let p = program(&rules).unwrap();
        let tail = program(&rules[1..]).unwrap();
        assert_eq!(p, tail);
        assert!(!check(&p, NULL, ACC_READ));
        assert!(check(&p, ZERO, ACC_READ));
        let allow_all = program(&[rule(true, 'a', None, None, "")]).unwrap();
        assert!(check(&allow_all, SDA, RW | ACC_MKNOD));
    }

    #[test]
    fn numbers_are_compared_as_32_bits_and_out_of_range_ones_refused() {
        let p = program(&[rule(true, 'c', Some(4_000_000_000), None, "r")]).unwrap();
        assert!(check(&p, (DEV_CHAR, 4_000_000_000, 0), ACC_READ));
        let err = program(&[rule(true, 'c', Some(1 << 32), None, "r")]).unwrap_err();
        assert!(err.to_string().contains("4294967296"), "{err}");
        assert!(program(&[rule(true, 'b', None, Some(-2), "r")]).is_err());
    }

    #[test]
    fn runcs_defaults_after_a_deny_all_allow_the_standard_nodes_only() {
        let deny_all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap();
        let rules = super::super::devices::rules(&[deny_all]).unwrap();
        let p = program(&rules).unwrap();
        assert!(check(&p, NULL, RW));
        assert!(check(&p, (DEV_CHAR, 136, 4), RW), "any pty");
        assert!(check(&p, SDA, ACC_MKNOD), "mknod of any block device");
        assert!(!check(&p, SDA, ACC_READ));
        assert!(
            !check(&p, (DEV_CHAR, 10, 229), ACC_READ),
            "fuse was not listed"
        );
    }
}
