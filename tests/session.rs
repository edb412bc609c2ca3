//! The embedding API: a host program checks and runs kdl through `Session` and reads
//! values back; bindings and role slots persist between calls.

use kdl::eval::Value;
use kdl::syntax::Role;
use kdl::Session;

#[test]
fn bindings_and_slots_persist_between_calls() {
    let mut s = Session::capture();
    s.eval_str("let width = 512").unwrap();
    s.eval_str("student llama(layers=8, dim=width, vocab=51_800)").unwrap();
    match s.slot(Role::Student) {
        Some(Value::Model(m)) => {
            assert_eq!(m.dim, 512);
            assert_eq!(m.ffn, 1408);
            assert_eq!(m.params(), Some(52_220_416));
        }
        _ => panic!("student slot holds a model"),
    }
    let v = s.eval_str("student.layers * 2").unwrap().unwrap();
    assert!(matches!(v, Value::Num(n) if n == 16.0));
}

#[test]
fn print_output_is_captured() {
    let mut s = Session::capture();
    s.eval_str("use losses\nprint hinton(alpha=0.5, T=2)").unwrap();
    assert_eq!(s.take_output(), "0.5·ce + 2·kl(T=2)\n");
    assert_eq!(s.take_output(), "");
}

#[test]
fn errors_come_back_as_diagnostics_with_spans() {
    let mut s = Session::capture();
    let err = s.eval_str("student llama(layers=8, dimm=512)").unwrap_err();
    assert!(!err.io);
    let messages: Vec<&str> = err.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert!(messages.contains(&"`llama` has no argument named `dimm`"), "{messages:?}");
    let rendered = s.render(&err.diagnostics, false);
    assert!(rendered.contains("did you mean `dim`?"), "{rendered}");
    // A rejected entry binds nothing.
    assert!(s.slot(Role::Student).is_none());
}

#[test]
fn warnings_are_reported_but_do_not_stop_the_run() {
    let mut s = Session::capture();
    s.eval_str("loss 0.5*ce + 0.5*kl(T=2)").unwrap();
    let w = s.take_warnings();
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("not scaled by T²"));
    assert!(s.slot(Role::Loss).is_some());
}

#[test]
fn card_line_runs_verbatim_with_a_teacher() {
    let mut s = Session::capture();
    s.eval_str("use arch\nteacher smollm2_135m()").unwrap();
    s.eval_str("student llama(layers=8, dim=512); loss 0.5*ce + 0.5*kl(T=2)*T^2").unwrap();
    assert!(s.take_warnings().is_empty());
    let Some(Value::Loss(l)) = s.slot(Role::Loss) else { panic!("loss slot") };
    assert_eq!(l.describe(), "0.5·ce + 2·kl(T=2)");
    let Some(Value::Model(m)) = s.slot(Role::Student) else { panic!("student slot") };
    assert_eq!(m.vocab, Some(49_152), "the student inherits the teacher's vocabulary");
}

#[test]
fn interactive_sessions_may_redefine_names_files_may_not() {
    let mut s = Session::capture();
    s.eval_str("let lr = 1e-3").unwrap();
    assert!(s.eval_str("let lr = 3e-4").is_err());
    s.set_interactive(true);
    s.eval_str("let lr = 3e-4").unwrap();
    assert!(matches!(s.get("lr"), Some(Value::Num(x)) if x == 3e-4));
}

#[test]
fn type_of_reports_kinds_without_running() {
    let mut s = Session::capture();
    assert_eq!(s.type_of("0.5*ce + kl(T=2)").unwrap().kinds.to_string(), "loss");
    assert_eq!(s.type_of("warmup(10) >> cosine(1e-3, 1e-4)").unwrap().kinds.to_string(), "schedule");
    assert!(s.type_of("ce * ce").is_err());
}

#[test]
fn a_missing_file_is_an_io_error() {
    let mut s = Session::capture();
    let err = s.eval_file(std::path::Path::new("no/such/script.kd")).unwrap_err();
    assert!(err.io);
    assert!(err.to_string().contains("no such file"), "{err}");
}

#[test]
fn stage_values_expose_their_slots() {
    let mut s = Session::capture();
    s.eval_str("stage a { student llama(layers=4, dim=256, vocab=100) }\nstage b { teacher previous.student\nstudent llama(layers=2, dim=128, vocab=100) }")
        .unwrap();
    let v = s.eval_str("b.teacher.layers + a.student.layers").unwrap().unwrap();
    assert!(matches!(v, Value::Num(n) if n == 8.0));
}
