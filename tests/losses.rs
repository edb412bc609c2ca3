//! Numeric parity of the loss engine with plain PyTorch formulas: fixed logits, hidden
//! states and a mask made by tests/fixtures/loss_reference.py (run by ./setup.sh, which
//! exports KDL_FIXTURES_LOSS), every term at T = 1 and 2, combinations and their gradients
//! within 1e-5, and the one-denominator rule across micro-batches.

use kdl::engine::loss::{LossInputs, LossOutput, LossPlan};
use kdl::eval::Value;
use kdl::spec::{LayerMap, LlamaSpec, LossExpr, Schedule, Term, TermKind};
use kdl::Session;
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;
const VOCAB: usize = 11;

fn fixtures() -> PathBuf {
    let dir =
        std::env::var_os("KDL_FIXTURES_LOSS").map(PathBuf::from).expect("KDL_FIXTURES_LOSS is unset: run ./setup.sh (it makes the loss reference values)");
    assert!(dir.join("values.json").is_file(), "{} has no loss fixtures: run ./setup.sh", dir.display());
    dir
}

struct Fixture {
    tensors: HashMap<String, Tensor>,
    values: HashMap<String, f64>,
}

impl Fixture {
    fn load() -> Fixture {
        let dir = fixtures();
        let mut tensors = HashMap::new();
        for file in ["inputs.safetensors", "grads.safetensors"] {
            for (name, t) in Tensor::read_safetensors(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}")) {
                tensors.insert(name, t);
            }
        }
        let values = serde_json::from_str(&std::fs::read_to_string(dir.join("values.json")).expect("values.json")).expect("values.json is a map of numbers");
        Fixture { tensors, values }
    }

    fn t(&self, name: &str) -> Tensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("fixture tensor {name}")).shallow_clone()
    }

    fn v(&self, name: &str) -> f64 {
        *self.values.get(name).unwrap_or_else(|| panic!("fixture value {name}"))
    }

    /// A fresh leaf that collects its own gradient (not shared with the fixture's tensor).
    fn student_logits(&self) -> Tensor {
        self.t("student_logits").detach().set_requires_grad(true)
    }
}

fn spec(layers: usize, dim: usize, vocab: usize) -> LlamaSpec {
    LlamaSpec {
        layers,
        dim,
        heads: 2,
        kv_heads: 2,
        ffn: 4 * dim,
        vocab: Some(vocab),
        tie: true,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
        max_seq: 64,
        qkv_bias: false,
        o_bias: false,
    }
}

fn term(kind: TermKind, t: f64, mix: Option<f64>) -> Term {
    Term { kind, of: None, t: Schedule::Const(t), mix, layers: None }
}

fn hidden(kind: TermKind, layers: LayerMap) -> Term {
    Term { kind, of: None, t: Schedule::Const(1.0), mix: None, layers: Some(layers) }
}

fn sum(terms: Vec<(f64, Term)>) -> LossExpr {
    LossExpr { terms: terms.into_iter().map(|(w, t)| (Schedule::Const(w), t)).collect(), on_policy: None }
}

/// A plan over the fixture's models: vocabulary 11, a 2-layer width-6 student, a 4-layer
/// width-`teacher_dim` teacher.
fn plan(expr: &LossExpr, vs: &nn::VarStore, teacher_dim: usize) -> LossPlan {
    LossPlan::new(expr, &spec(2, 6, VOCAB), Some(&spec(4, teacher_dim, VOCAB)), &(vs.root() / "loss")).unwrap_or_else(|e| panic!("{}: {e}", expr.describe()))
}

fn logit_inputs<'a>(f: &Fixture, student: &'a Tensor, teacher: &'a Tensor, targets: &'a Tensor, mask: &'a Tensor) -> LossInputs<'a> {
    LossInputs {
        student_logits: student,
        teacher_logits: Some(teacher),
        teacher_sparse: None,
        student_states: None,
        teacher_states: None,
        targets,
        mask,
        denominator: f.v("denominator"),
    }
}

fn run(f: &Fixture, expr: &LossExpr, student: &Tensor) -> LossOutput {
    let vs = nn::VarStore::new(Device::Cpu);
    let (teacher, targets, mask) = (f.t("teacher_logits"), f.t("targets"), f.t("mask"));
    plan(expr, &vs, 8).compute(&logit_inputs(f, student, &teacher, &targets, &mask), 0, 100)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn close(what: &str, got: f64, want: f64) {
    assert!((got - want).abs() <= TOLERANCE, "{what}: kdl {got}, torch {want} (|Δ| = {:e})", (got - want).abs());
}

#[test]
fn each_logit_term_matches_torch_with_mask() {
    let f = Fixture::load();
    let mut cases = vec![("ce".to_string(), term(TermKind::Ce, 1.0, None))];
    for t in [1.0, 2.0] {
        for (kind, mix) in [(TermKind::Kl, None), (TermKind::Rkl, None), (TermKind::Js, Some(0.3)), (TermKind::Tvd, None), (TermKind::Skl, Some(0.1)), (TermKind::Srkl, Some(0.1))] {
            cases.push((format!("{}_T{t}", kind.name()), term(kind, t, mix)));
        }
    }
    for (name, term) in cases {
        let out = run(&f, &LossExpr::single(term), &f.student_logits());
        close(&name, out.total.double_value(&[]), f.v(&name));
        close(&format!("{name} (reported)"), out.terms[0].1, f.v(&name));
    }
}

#[test]
fn hinton_written_in_kdl_matches_torch_value_and_gradient() {
    let f = Fixture::load();
    let mut session = Session::capture();
    let Some(Value::Loss(expr)) = session.eval_str("0.5*ce + 0.5*kl(T=2)*T^2").unwrap() else { panic!("a loss expression gives a loss") };
    let student = f.student_logits();
    let out = run(&f, &expr, &student);
    close("0.5*ce + 0.5*kl(T=2)*T^2", out.total.double_value(&[]), f.v("hinton"));
    // Reported terms are unweighted: T² stays in the weight, not in kl's value.
    assert_eq!(out.terms.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["ce", "kl"]);
    close("ce (reported)", out.terms[0].1, f.v("ce"));
    close("kl(T=2) (reported)", out.terms[1].1, f.v("kl_T2"));
    out.total.backward();
    let d = max_abs_diff(&student.grad(), &f.t("hinton_grad"));
    assert!(d <= TOLERANCE, "d loss / d logits: max |Δ| = {d:e}");
}

#[test]
fn every_logit_term_together_matches_torch_value_and_gradient() {
    let f = Fixture::load();
    let expr = sum(vec![
        (0.3, term(TermKind::Ce, 1.0, None)),
        (0.2, term(TermKind::Rkl, 2.0, None)),
        (0.1, term(TermKind::Js, 1.0, Some(0.3))),
        (0.25, term(TermKind::Tvd, 2.0, None)),
        (-0.05, term(TermKind::Skl, 2.0, Some(0.1))),
        (0.15, term(TermKind::Kl, 1.0, None)),
    ]);
    let student = f.student_logits();
    let out = run(&f, &expr, &student);
    close("mixed", out.total.double_value(&[]), f.v("mixed"));
    out.total.backward();
    let d = max_abs_diff(&student.grad(), &f.t("mixed_grad"));
    assert!(d <= TOLERANCE, "d loss / d logits: max |Δ| = {d:e}");
}

#[test]
fn two_micro_batches_with_the_step_denominator_equal_one_batch() {
    let f = Fixture::load();
    let expr = sum(vec![(0.5, term(TermKind::Ce, 1.0, None)), (2.0, term(TermKind::Kl, 2.0, None)), (0.3, term(TermKind::Js, 1.0, Some(0.3)))]);
    let vs = nn::VarStore::new(Device::Cpu);
    let plan = plan(&expr, &vs, 8);
    let (teacher, targets, mask) = (f.t("teacher_logits"), f.t("targets"), f.t("mask"));

    let whole = f.student_logits();
    let one = plan.compute(&logit_inputs(&f, &whole, &teacher, &targets, &mask), 0, 100);
    one.total.backward();

    let student = f.t("student_logits");
    let mut total = 0.0;
    let mut terms = vec![0.0; one.terms.len()];
    let mut grads = Vec::new();
    for b in 0..2 {
        let part = student.narrow(0, b, 1).detach().set_requires_grad(true);
        let (tt, tg, m) = (teacher.narrow(0, b, 1), targets.narrow(0, b, 1), mask.narrow(0, b, 1));
        // Each micro-batch is divided by the step's 7 valid tokens, not by its own count.
        let out = plan.compute(&logit_inputs(&f, &part, &tt, &tg, &m), 0, 100);
        out.total.backward();
        total += out.total.double_value(&[]);
        for (acc, (_, v)) in terms.iter_mut().zip(&out.terms) {
            *acc += v;
        }
        grads.push(part.grad());
    }
    assert!((total - one.total.double_value(&[])).abs() <= 1e-6, "micro-batches {total} vs one batch {}", one.total.double_value(&[]));
    for ((name, want), got) in one.terms.iter().zip(terms) {
        assert!((got - want).abs() <= 1e-6, "{name}: micro-batches {got} vs one batch {want}");
    }
    let d = max_abs_diff(&Tensor::cat(&grads, 0), &whole.grad());
    assert!(d <= 1e-7, "gradients differ by {d:e}");
}

#[test]
fn masked_positions_are_never_read() {
    let f = Fixture::load();
    let expr = sum(vec![(1.0, term(TermKind::Ce, 1.0, None)), (1.0, term(TermKind::Rkl, 2.0, None)), (1.0, term(TermKind::Tvd, 1.0, None))]);
    let clean = run(&f, &expr, &f.student_logits()).total.double_value(&[]);
    // NaN logits and out-of-range targets where mask = 0 must not reach the loss.
    let keep = f.t("mask").unsqueeze(-1).gt(0.0);
    let student = f.t("student_logits").where_self(&keep, &Tensor::from(f64::NAN).to_kind(Kind::Float));
    let teacher = f.t("teacher_logits").where_self(&keep, &Tensor::from(f64::NAN).to_kind(Kind::Float));
    let (targets, mask) = (f.t("targets"), f.t("mask"));
    let vs = nn::VarStore::new(Device::Cpu);
    let dirty = plan(&expr, &vs, 8).compute(&logit_inputs(&f, &student, &teacher, &targets, &mask), 0, 100).total.double_value(&[]);
    assert_eq!(clean, dirty);
}

/// What a captured training step runs: one `StepValues` refilled in place at each step
/// and every position weighed by its mask (no data-dependent shapes). It must give the
/// eager loss, its terms and its gradient, at steps where the schedules differ.
#[test]
fn device_values_and_fixed_shapes_give_the_eager_loss() {
    let f = Fixture::load();
    let mut session = Session::capture();
    let Some(Value::Loss(expr)) = session.eval_str("let w = linear(1, 0)\nw*ce + (1 - w)*kl(T=linear(3, 1))*T^2 + 0.3*tvd()").unwrap() else { panic!("a loss") };
    let vs = nn::VarStore::new(Device::Cpu);
    let p = plan(&expr, &vs, 8);
    let (teacher, targets, mask) = (f.t("teacher_logits"), f.t("targets"), f.t("mask"));
    assert!(mask.eq(0.0).any().int64_value(&[]) == 1, "the fixture masks some positions");
    let mut values = p.values(Device::Cpu);
    for step in [0, 37, 50, 99] {
        let eager_logits = f.student_logits();
        let eager = p.compute(&logit_inputs(&f, &eager_logits, &teacher, &targets, &mask), step, 100);
        eager.total.backward();
        let fixed_logits = f.student_logits();
        p.set_values(&mut values, step, 100, f.v("denominator"));
        let fixed = p.compute_with(&logit_inputs(&f, &fixed_logits, &teacher, &targets, &mask), &values, true);
        fixed.total.backward();
        close(&format!("step {step}: total"), fixed.total.double_value(&[]), eager.total.double_value(&[]));
        for ((name, want), got) in eager.terms.iter().zip(&fixed.terms) {
            close(&format!("step {step}: {name}"), got.double_value(&[]), *want);
        }
        let g = max_abs_diff(&fixed_logits.grad(), &eager_logits.grad());
        assert!(g < 1e-6, "step {step}: gradients differ by {g}");
    }
}

#[test]
fn bf16_logits_are_upcast_and_close_to_f32() {
    let f = Fixture::load();
    let expr = sum(vec![(0.5, term(TermKind::Ce, 1.0, None)), (2.0, term(TermKind::Kl, 2.0, None))]);
    let student = f.t("student_logits").to_kind(Kind::BFloat16).detach().set_requires_grad(true);
    let out = run(&f, &expr, &student);
    assert_eq!(out.total.kind(), Kind::Float);
    assert!((out.total.double_value(&[]) - f.v("hinton")).abs() < 0.05, "bf16 total {}", out.total.double_value(&[]));
    out.total.backward();
    assert_eq!(student.grad().kind(), Kind::BFloat16);
}

#[test]
fn schedules_are_read_at_the_step() {
    let f = Fixture::load();
    let mut session = Session::capture();
    let Some(Value::Loss(expr)) = session.eval_str("let w = linear(1, 0)\nw*ce + (1 - w)*kl(T=linear(3, 1))*T^2").unwrap() else { panic!("a loss") };
    let out = run(&f, &expr, &f.student_logits());
    close("step 0: w = 1, only ce", out.total.double_value(&[]), f.v("ce"));
    // Step 50 of 100: w = 0.5 and T = 2, so the loss is Hinton's 0.5·ce + 2·kl(T=2).
    let vs = nn::VarStore::new(Device::Cpu);
    let (student, teacher, targets, mask) = (f.student_logits(), f.t("teacher_logits"), f.t("targets"), f.t("mask"));
    let mid = plan(&expr, &vs, 8).compute(&logit_inputs(&f, &student, &teacher, &targets, &mask), 50, 100);
    close("step 50 of 100", mid.total.double_value(&[]), f.v("hinton"));
    close("kl at T = 2", mid.terms[1].1, f.v("kl_T2"));
}

#[test]
fn hidden_terms_match_torch_with_projections() {
    let f = Fixture::load();
    let expr = sum(vec![(1.0, hidden(TermKind::Mse, LayerMap::Every(2))), (0.5, hidden(TermKind::Cosine, LayerMap::Pairs(vec![(0, 2), (1, 0)])))]);
    let vs = nn::VarStore::new(Device::Cpu);
    let plan = plan(&expr, &vs, 8);
    assert!(plan.needs_hidden() && plan.needs_teacher());
    assert_eq!(plan.term_names(), ["mse", "cosine"]);

    // The projections are trainable variables of the caller's store, one per layer pair.
    let mut names: Vec<String> = vs.variables().into_keys().collect();
    names.sort();
    assert_eq!(names, ["loss.cosine_1.s0_t2.weight", "loss.cosine_1.s1_t0.weight", "loss.mse_0.s0_t1.weight", "loss.mse_0.s1_t3.weight"]);
    assert_eq!(vs.trainable_variables().len(), 4);
    let vars = vs.variables();
    for (var, fixture) in [("mse_0.s0_t1", "mse_s0_t1"), ("mse_0.s1_t3", "mse_s1_t3"), ("cosine_1.s0_t2", "cos_s0_t2"), ("cosine_1.s1_t0", "cos_s1_t0")] {
        let mut w = vars[&format!("loss.{var}.weight")].shallow_clone();
        assert_eq!(w.size(), [8, 6]);
        tch::no_grad(|| w.copy_(&f.t(&format!("proj_{fixture}"))));
    }

    let s_states: Vec<Tensor> = (0..2).map(|i| f.t(&format!("s{i}")).detach().set_requires_grad(true)).collect();
    let t_states: Vec<Tensor> = (0..4).map(|i| f.t(&format!("t{i}"))).collect();
    let (student, teacher, targets, mask) = (f.student_logits(), f.t("teacher_logits"), f.t("targets"), f.t("mask"));
    let inputs = LossInputs { student_states: Some(&s_states), teacher_states: Some(&t_states), ..logit_inputs(&f, &student, &teacher, &targets, &mask) };
    let out = plan.compute(&inputs, 0, 100);
    close("mse(layers=every(2))", out.terms[0].1, f.v("mse_every2"));
    close("cosine(layers=[[0, 2], [1, 0]])", out.terms[1].1, f.v("cosine_pairs"));
    close("total", out.total.double_value(&[]), f.v("mse_every2") + 0.5 * f.v("cosine_pairs"));

    // Gradients of mse alone reach the student's states and the projection.
    let mse = LossPlan::new(&sum(vec![(1.0, hidden(TermKind::Mse, LayerMap::Every(2)))]), &spec(2, 6, VOCAB), Some(&spec(4, 8, VOCAB)), &(vs.root() / "again"))
        .unwrap();
    for (name, mut w) in vs.variables() {
        if name == "again.mse_0.s0_t1.weight" || name == "again.mse_0.s1_t3.weight" {
            let fixture = if name.contains("s0_t1") { "proj_mse_s0_t1" } else { "proj_mse_s1_t3" };
            tch::no_grad(|| w.copy_(&f.t(fixture)));
        }
    }
    let out = mse.compute(&inputs, 0, 100);
    out.total.backward();
    let d = max_abs_diff(&s_states[0].grad(), &f.t("mse_grad_s0"));
    assert!(d <= TOLERANCE, "d mse / d student state 0: max |Δ| = {d:e}");
    let d = max_abs_diff(&vs.variables()["again.mse_0.s0_t1.weight"].grad(), &f.t("mse_grad_proj_s0_t1"));
    assert!(d <= TOLERANCE, "d mse / d projection: max |Δ| = {d:e}");
}

#[test]
fn hidden_terms_of_equal_widths_need_no_projection() {
    let f = Fixture::load();
    let expr = sum(vec![(1.0, hidden(TermKind::Mse, LayerMap::Every(1))), (1.0, hidden(TermKind::Cosine, LayerMap::Every(1)))]);
    let vs = nn::VarStore::new(Device::Cpu);
    let plan = plan(&expr, &vs, 6);
    assert!(vs.variables().is_empty(), "no projection between equal widths");
    let s_states: Vec<Tensor> = (0..2).map(|i| f.t(&format!("s{i}"))).collect();
    let t_states: Vec<Tensor> = (0..4).map(|i| f.t(&format!("t{i}")).narrow(2, 0, 6)).collect();
    let (student, teacher, targets, mask) = (f.student_logits(), f.t("teacher_logits"), f.t("targets"), f.t("mask"));
    let inputs = LossInputs { student_states: Some(&s_states), teacher_states: Some(&t_states), ..logit_inputs(&f, &student, &teacher, &targets, &mask) };
    let out = plan.compute(&inputs, 0, 100);
    close("mse", out.terms[0].1, f.v("mse_same_width"));
    close("cosine", out.terms[1].1, f.v("cosine_same_width"));
}

#[test]
fn projections_start_the_same_in_every_run() {
    let expr = LossExpr::single(hidden(TermKind::Mse, LayerMap::Every(2)));
    let init = || {
        let vs = nn::VarStore::new(Device::Cpu);
        plan(&expr, &vs, 8);
        vs.variables()["loss.mse_0.s0_t1.weight"].copy()
    };
    let (a, b) = (init(), init());
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    let std = a.std(true).double_value(&[]);
    assert!(std > 0.2 && std < 0.6, "N(0, 1/6) init, std {std}");
}

#[test]
fn term_names_tell_repeated_builtins_apart() {
    let expr = sum(vec![
        (0.5, term(TermKind::Ce, 1.0, None)),
        (8.0, term(TermKind::Kl, 4.0, None)),
        (0.1, term(TermKind::Kl, 1.0, None)),
        (0.1, term(TermKind::Kl, 1.0, None)),
        (0.2, term(TermKind::Js, 1.0, Some(0.3))),
    ]);
    let vs = nn::VarStore::new(Device::Cpu);
    assert_eq!(plan(&expr, &vs, 8).term_names(), ["ce", "kl@T=4", "kl", "kl#2", "js"]);
}

#[test]
fn plan_errors_name_what_does_not_fit() {
    let root = nn::VarStore::new(Device::Cpu);
    let vs = root.root();
    let kl = LossExpr::single(term(TermKind::Kl, 2.0, None));
    let err = LossPlan::new(&kl, &spec(2, 6, 11), Some(&spec(4, 8, 12)), &vs).err().expect("vocabularies differ");
    assert!(err.contains("11") && err.contains("12") && err.contains("vocabulary"), "{err}");
    let err = LossPlan::new(&kl, &spec(2, 6, 11), None, &vs).err().expect("no teacher");
    assert!(err.contains("teacher"), "{err}");
    let ce = LossPlan::new(&LossExpr::single(term(TermKind::Ce, 1.0, None)), &spec(2, 6, 11), None, &vs).expect("ce needs no teacher");
    assert!(!ce.needs_teacher() && !ce.needs_hidden());
    // Hidden-state terms do not compare vocabularies, but check layer numbers.
    let mse = LossExpr::single(hidden(TermKind::Mse, LayerMap::Every(3)));
    let err = LossPlan::new(&mse, &spec(2, 6, 11), Some(&spec(4, 8, 12)), &vs).err().expect("every(3) of a 2-layer student needs 6 teacher layers");
    assert!(err.contains("teacher layer 5") && err.contains("4 layers"), "{err}");
    let pairs = LossExpr::single(hidden(TermKind::Cosine, LayerMap::Pairs(vec![(2, 0)])));
    let err = LossPlan::new(&pairs, &spec(2, 6, 11), Some(&spec(4, 8, 12)), &vs).err().expect("student layer 2 of 2");
    assert!(err.contains("student layer 2"), "{err}");
}

/// With a teacher cache keeping every id (k = vocabulary), each divergence, at T = 1 and
/// re-tempered to T = 2, is the dense term up to the f16 rounding of the stored
/// log-probabilities; with fewer ids, KL over the kept ids and one tail class is a lower
/// bound on the dense KL at T = 1 (merging classes cannot increase a divergence).
#[test]
fn a_cached_teacher_gives_the_dense_divergences_when_it_keeps_every_id() {
    use kdl::engine::cache::SparseTeacher;
    let f = Fixture::load();
    let (teacher, targets, mask) = (f.t("teacher_logits"), f.t("targets"), f.t("mask"));
    let student = f.student_logits();
    let vs = nn::VarStore::new(Device::Cpu);
    let with = |sparse: &SparseTeacher, expr: &LossExpr| {
        let mut inp = logit_inputs(&f, &student, &teacher, &targets, &mask);
        inp.teacher_logits = None;
        inp.teacher_sparse = Some(sparse);
        plan(expr, &vs, 8).compute(&inp, 0, 100).total.double_value(&[])
    };
    let every = SparseTeacher::from_logits(&teacher, &targets, VOCAB);
    let mut worst: f64 = 0.0;
    for t in [1.0, 2.0] {
        for (kind, mix) in [(TermKind::Kl, None), (TermKind::Rkl, None), (TermKind::Js, Some(0.3)), (TermKind::Tvd, None), (TermKind::Skl, Some(0.1)), (TermKind::Srkl, Some(0.1))] {
            let expr = LossExpr::single(term(kind, t, mix));
            let (dense, cached) = (run(&f, &expr, &student).total.double_value(&[]), with(&every, &expr));
            let rel = (cached - dense).abs() / dense.abs().max(1e-6);
            worst = worst.max(rel);
            assert!(rel < 1e-3, "{}: cached {cached}, dense {dense} (relative {rel:e})", expr.describe());
        }
    }
    eprintln!("k = vocabulary: worst relative difference from the dense terms {worst:e}");
    let kl = LossExpr::single(term(TermKind::Kl, 1.0, None));
    let dense = run(&f, &kl, &student).total.double_value(&[]);
    for k in [1, 3, 6] {
        let cached = with(&SparseTeacher::from_logits(&teacher, &targets, k), &kl);
        assert!(cached <= dense + 1e-3 && cached >= 0.0, "k={k}: kl over {k} ids + tail is {cached}, dense {dense}");
    }
}

/// RS-KD's sampled teacher (`sample(n)`): each id's count / n estimates its probability
/// without bias, the tail's ids too, so the KL to the draws has the dense KL's gradient on
/// average. 2,000 positions share one teacher and one student: averaged over them, the
/// sampled gradient is the dense one; the top-k + tail gradient is not, which is the bias
/// sampling removes. The draws are systematic, so each count is within one of n·p.
#[test]
fn sampled_teacher_counts_are_unbiased_and_give_the_dense_kl_gradient_on_average() {
    use kdl::engine::cache::{sample::sampled_entries, Payload, SparseTeacher};
    use kdl::engine::loss::{kl_rows, sparse_kl_rows};
    let (v, rows, per_row, n) = (40i64, 4usize, 500i64, 50usize);
    tch::manual_seed(3);
    let teacher_logits = Tensor::randn([v], (Kind::Float, Device::Cpu)) * 2.0;
    let p = teacher_logits.softmax(-1, Kind::Float);
    let logits = teacher_logits.view([1, 1, v]).expand([rows as i64, per_row, v], false).contiguous();
    let targets = Tensor::zeros([rows as i64, per_row], (Kind::Int64, Device::Cpu));
    let blocks: Vec<u32> = (0..rows as u32).collect();
    let entries = sampled_entries(&logits, &targets, n, &blocks);
    let p_vec = Vec::<f32>::try_from(&p).unwrap();
    let mut mean = vec![0f64; v as usize];
    let mut distinct_total = 0usize;
    for e in &entries {
        let Payload::Sampled { distinct, ids, counts } = &e.payload else { panic!("a sampled entry") };
        let mut at = 0;
        for &d in distinct {
            let d = d as usize;
            assert_eq!(counts[at..at + d].iter().map(|&c| c as usize).sum::<usize>(), n, "a position's counts sum to its draws");
            for j in at..at + d {
                let expected = n as f64 * p_vec[ids[j] as usize] as f64;
                assert!((counts[j] as f64 - expected).abs() < 1.0 + 1e-4, "id {}: count {} is not within one of n·p = {expected}", ids[j], counts[j]);
                mean[ids[j] as usize] += counts[j] as f64 / n as f64;
            }
            at += d;
            distinct_total += d;
        }
    }
    let positions = (rows as i64 * per_row) as f64;
    let worst = mean.iter().zip(&p_vec).map(|(m, &q)| (m / positions - q as f64).abs()).fold(0.0, f64::max);
    eprintln!("sample(50) over {v} ids: mean {:.1} distinct ids per position, worst |mean count/n − p| {worst:.2e}", distinct_total as f64 / positions);
    assert!(worst < 2e-3, "count/n is biased: off by {worst}");

    // The student: one distribution at every position, its gradient averaged over them.
    let student = (Tensor::randn([v], (Kind::Float, Device::Cpu)) * 2.0).set_requires_grad(true);
    let grad_of = |f: &dyn Fn(&Tensor) -> Tensor| {
        let s = student.view([1, v]).expand([positions as i64, v], false);
        let g = tch::Tensor::run_backward(&[f(&s).mean(Kind::Float)], &[&student], false, false);
        g[0].shallow_clone()
    };
    let lt = p.log().view([1, v]).expand([positions as i64, v], false);
    let dense = grad_of(&|s| kl_rows(&lt.exp(), &lt, &s.log_softmax(-1, Kind::Float)));
    let sampled = SparseTeacher::from_entries(&entries, per_row as usize);
    let width = sampled.k() as i64;
    let by_draws = grad_of(&|s| sparse_kl_rows(s, &sampled.ids.view([-1, width]), &sampled.log_probs.view([-1, width]), &sampled.tail.view([-1])));
    let top = SparseTeacher::from_logits(&logits, &targets, 5);
    let by_top5 = grad_of(&|s| sparse_kl_rows(s, &top.ids.view([-1, 5]), &top.log_probs.view([-1, 5]), &top.tail.view([-1])));
    let (off_sampled, off_top) = (max_abs_diff(&by_draws, &dense), max_abs_diff(&by_top5, &dense));
    eprintln!("gradient vs dense KL: sampled {off_sampled:.2e}, top-5 + tail {off_top:.2e}");
    assert!(off_sampled < 2e-3, "the sampled KL's mean gradient is off the dense one by {off_sampled}");
    assert!(off_top > 10.0 * off_sampled, "top-5 + tail should be visibly biased here ({off_top}), or this test cannot tell");
}
