//! Schedules over training steps (learning rate, loss weights, temperature). `cosine`
//! lives in `losses.rs` because the name also means a hidden-state loss.

use super::{param, Builtin, Default::*, Family, Range};
use crate::eval::Value;
use crate::kind::Kinds;
use crate::spec::Schedule;
use std::rc::Rc;

fn sched(s: Schedule) -> Value {
    Value::Schedule(Rc::new(s))
}

pub fn table() -> Vec<Builtin> {
    let n = Kinds::NUMBER;
    let steps = || param("steps", n, Optional, "length in steps (default: the rest of the run)").range(Range::PositiveInt);
    vec![
        Builtin {
            name: "constant",
            family: Family::Schedules,
            params: vec![param("value", n, Required, "the value at every step")],
            returns: Kinds::SCHEDULE,
            doc: "the same value at every step",
            example: "warmup(100) >> constant(3e-4)",
            run: |_, a| Ok(sched(Schedule::Const(a.num("value")?))),
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "warmup",
            family: Family::Schedules,
            params: vec![param("steps", n, Required, "warm-up length in steps").range(Range::PositiveInt)],
            returns: Kinds::SCHEDULE,
            doc: "ramps linearly up to the next schedule's first value (or to 1 when alone)",
            example: "warmup(200) >> cosine(5e-4, 5e-5)",
            run: |_, a| Ok(sched(Schedule::Warmup { steps: a.num("steps")? as u64 })),
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "linear",
            family: Family::Schedules,
            params: vec![param("from", n, Required, "first value"), param("to", n, Required, "last value"), steps()],
            returns: Kinds::SCHEDULE,
            doc: "straight line from one value to another",
            example: "kl(T=linear(4, 1))",
            run: |_, a| {
                Ok(sched(Schedule::Linear { from: a.num("from")?, to: a.num("to")?, steps: a.opt_num("steps")?.map(|s| s as u64) }))
            },
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "step",
            family: Family::Schedules,
            params: vec![
                param("from", n, Required, "first value"),
                param("gamma", n, Num(0.1), "factor applied every interval").range(Range::Positive),
                param("every", n, Required, "interval in steps").range(Range::PositiveInt),
            ],
            returns: Kinds::SCHEDULE,
            doc: "multiplies by gamma every `every` steps",
            example: "step(1e-3, gamma=0.5, every=1000)",
            run: |_, a| {
                Ok(sched(Schedule::Step { from: a.num("from")?, gamma: a.num("gamma")?, every: a.num("every")? as u64 }))
            },
            pure: true,
            slots: &[],
        },
        Builtin {
            name: "at",
            family: Family::Schedules,
            params: vec![
                param("schedule", Kinds::SCALAR, Required, "a schedule or number"),
                param("step", n, Required, "step number, from 0").range(Range::NonNegativeInt),
                param("total", n, Required, "steps in the run").range(Range::PositiveInt),
            ],
            returns: Kinds::NUMBER,
            doc: "the schedule's value at a step of a run",
            example: "at(warmup(200) >> cosine(5e-4, 5e-5), 1000, 5000)",
            run: |_, a| Ok(Value::Num(a.schedule("schedule")?.at(a.num("step")? as u64, a.num("total")? as u64))),
            pure: true,
            slots: &[],
        },
    ]
}
