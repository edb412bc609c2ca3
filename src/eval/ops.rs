//! Applying operators to values. Which combinations are allowed is `kind::binary_rule`,
//! shared with the checker; this file only computes.

use super::value::Value;
use crate::kind::{binary_rule, neg_rule, OpError};
use crate::spec::schedule::ArithOp;
use crate::spec::{loss::mul_weights, Schedule};
use crate::syntax::BinOp;
use std::rc::Rc;

fn arith(op: BinOp) -> Option<ArithOp> {
    Some(match op {
        BinOp::Add => ArithOp::Add,
        BinOp::Sub => ArithOp::Sub,
        BinOp::Mul => ArithOp::Mul,
        BinOp::Div => ArithOp::Div,
        BinOp::Pow => ArithOp::Pow,
        _ => return None,
    })
}

fn num(op: BinOp, x: f64, y: f64) -> Value {
    match op {
        BinOp::Add => Value::Num(x + y),
        BinOp::Sub => Value::Num(x - y),
        BinOp::Mul => Value::Num(x * y),
        BinOp::Div => Value::Num(x / y),
        BinOp::Pow => Value::Num(x.powf(y)),
        BinOp::Lt => Value::Bool(x < y),
        BinOp::Le => Value::Bool(x <= y),
        BinOp::Gt => Value::Bool(x > y),
        BinOp::Ge => Value::Bool(x >= y),
        BinOp::Eq => Value::Bool(x == y),
        BinOp::Ne => Value::Bool(x != y),
        BinOp::Chain => Value::Schedule(Rc::new(Schedule::Chain(vec![Schedule::Const(x), Schedule::Const(y)]))),
    }
}

fn chain(a: Schedule, b: Schedule) -> Schedule {
    let mut parts = match a {
        Schedule::Chain(p) => p,
        other => vec![other],
    };
    match b {
        Schedule::Chain(p) => parts.extend(p),
        other => parts.push(other),
    }
    Schedule::Chain(parts)
}

/// `lhs op rhs`. `Err` carries the same message the checker would give.
pub fn apply_binary(op: BinOp, lhs: &Value, rhs: &Value) -> Result<Value, OpError> {
    binary_rule(op, lhs.kind(), rhs.kind())?;
    if op == BinOp::Eq {
        return Ok(Value::Bool(lhs.equals(rhs)));
    }
    if op == BinOp::Ne {
        return Ok(Value::Bool(!lhs.equals(rhs)));
    }
    if op == BinOp::Div && matches!(rhs, Value::Num(y) if *y == 0.0) {
        return Err(OpError { message: "division by zero".into(), help: "divide by a number other than 0".into(), blame_rhs: true });
    }
    Ok(match (lhs, rhs) {
        (Value::Num(x), Value::Num(y)) => num(op, *x, *y),
        (Value::Loss(a), Value::Loss(b)) => {
            let b = if op == BinOp::Sub { b.scaled(&Schedule::Const(-1.0)) } else { (**b).clone() };
            Value::Loss(Rc::new(a.plus(&b)))
        }
        (Value::Loss(l), w) | (w, Value::Loss(l)) if op == BinOp::Mul => {
            Value::Loss(Rc::new(l.scaled(&w.as_schedule().expect("rule allows only scalars"))))
        }
        (Value::Loss(l), w) => {
            // Division by a weight: multiply by its reciprocal.
            let w = w.as_schedule().expect("rule allows only scalars");
            let inv = match w.as_const() {
                Some(c) => Schedule::Const(1.0 / c),
                None => Schedule::Arith(ArithOp::Div, Box::new(Schedule::Const(1.0)), Box::new(w)),
            };
            Value::Loss(Rc::new(l.scaled(&inv)))
        }
        (Value::Str(a), Value::Str(b)) => Value::str(&format!("{a}{b}")),
        (Value::List(a), Value::List(b)) => Value::List(Rc::new(a.iter().chain(b.iter()).cloned().collect())),
        (a, b) => {
            let (sa, sb) = (a.as_schedule().expect("scalar"), b.as_schedule().expect("scalar"));
            if op == BinOp::Chain {
                Value::Schedule(Rc::new(chain(sa, sb)))
            } else if op == BinOp::Mul {
                Value::Schedule(Rc::new(mul_weights(&sa, &sb)))
            } else {
                let a = arith(op).expect("comparisons were handled");
                Value::Schedule(Rc::new(Schedule::Arith(a, Box::new(sa), Box::new(sb))))
            }
        }
    })
}

pub fn apply_neg(v: &Value) -> Result<Value, OpError> {
    neg_rule(v.kind())?;
    Ok(match v {
        Value::Num(x) => Value::Num(-x),
        Value::Loss(l) => Value::Loss(Rc::new(l.scaled(&Schedule::Const(-1.0)))),
        other => {
            let s = other.as_schedule().expect("rule allows schedules");
            Value::Schedule(Rc::new(mul_weights(&Schedule::Const(-1.0), &s)))
        }
    })
}
