//! Model merging against mergekit's formulas: linear, slerp (both branches), task arithmetic
//! and TIES within 1e-5 of tests/fixtures/merge_reference.py (run by ./setup.sh, which
//! exports KDL_FIXTURES_MERGE); DARE by its properties (density 1 is the undropped method,
//! the kept fraction and scale, a seed's repeatability); and the one-line errors.

use kdl::engine::merge::{average, merge_states, merge_tensor, MergeOptions, Method};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("KDL_FIXTURES_MERGE")
        .map(PathBuf::from)
        .expect("KDL_FIXTURES_MERGE is unset: run ./setup.sh (it makes the merge reference tensors)");
    assert!(dir.join("merge_reference.json").is_file(), "{} has no merge fixtures: run ./setup.sh", dir.display());
    dir
}

struct Fixture {
    tensors: HashMap<String, Tensor>,
    parts: Vec<String>,
    cases: Vec<serde_json::Value>,
}

impl Fixture {
    fn load() -> Fixture {
        let dir = fixtures();
        let tensors = Tensor::read_safetensors(dir.join("merge_reference.safetensors"))
            .unwrap_or_else(|e| panic!("merge_reference.safetensors: {e}"))
            .into_iter()
            .collect();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("merge_reference.json")).expect("merge_reference.json")).expect("merge_reference.json is json");
        let parts = json["parts"].as_array().expect("parts").iter().map(|p| p.as_str().expect("part name").to_string()).collect();
        let cases = json["cases"].as_array().expect("cases").clone();
        Fixture { tensors, parts, cases }
    }

    fn t(&self, name: &str) -> &Tensor {
        self.tensors.get(name).unwrap_or_else(|| panic!("fixture tensor {name}"))
    }

    fn case(&self, name: &str) -> &serde_json::Value {
        self.cases.iter().find(|c| c["case"] == name).unwrap_or_else(|| panic!("fixture case {name}"))
    }

    /// The case's models, in order, as state dicts of every part ("a", "b").
    fn states(&self, case: &serde_json::Value) -> Vec<BTreeMap<String, Tensor>> {
        let models = case["models"].as_array().expect("models");
        models.iter().map(|i| self.state(&format!("m{}", i.as_u64().expect("model index")))).collect()
    }

    fn state(&self, prefix: &str) -> BTreeMap<String, Tensor> {
        self.parts.iter().map(|p| (p.clone(), self.t(&format!("{prefix}.{p}")).shallow_clone())).collect()
    }
}

fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().map(|x| x.as_f64().expect("a number")).collect()).unwrap_or_default()
}

/// kdl's options from a fixture case; absent fields keep the method's mergekit default.
fn options(case: &serde_json::Value) -> MergeOptions {
    let mut o = MergeOptions::new(Method::parse(case["method"].as_str().expect("method")).expect("a kdl method"));
    o.weights = numbers(&case["weights"]);
    o.density = numbers(&case["density"]);
    if let Some(t) = case["t"].as_f64() {
        o.t = t;
    }
    o.normalize = case["normalize"].as_bool();
    o.rescale = case["rescale"].as_bool();
    if let Some(l) = case["lambda"].as_f64() {
        o.lambda = l;
    }
    o
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// Runs a fixture case through merge_states and compares every part with mergekit's result.
fn matches_reference(f: &Fixture, name: &str) {
    let case = f.case(name);
    let base = case["base"].as_bool().expect("base").then(|| f.state("base"));
    let merged = merge_states(&f.states(case), base.as_ref(), &options(case)).unwrap_or_else(|e| panic!("{name}: {e}"));
    for part in &f.parts {
        let got = &merged[part];
        let want = f.t(&format!("{name}.{part}"));
        assert_eq!(got.kind(), Kind::Float, "{name}.{part} is f32");
        assert_eq!(got.size(), want.size(), "{name}.{part} shape");
        let diff = max_abs_diff(got, want);
        assert!(diff <= TOLERANCE, "{name}.{part}: kdl and mergekit differ by {diff:e}");
    }
}

#[test]
fn linear_matches_mergekit_with_and_without_normalize() {
    let f = Fixture::load();
    matches_reference(&f, "linear");
    matches_reference(&f, "linear_unnormalized");
}

#[test]
fn slerp_matches_mergekit_on_both_branches() {
    let f = Fixture::load();
    for (name, colinear) in [("slerp", false), ("slerp_colinear", true)] {
        let dots = f.case(name)["dot"].as_object().expect("dot per part").clone();
        assert!(dots.values().all(|d| (d.as_f64().expect("dot").abs() > 0.9995) == colinear), "{name} takes the branch it tests: {dots:?}");
        matches_reference(&f, name);
    }
}

#[test]
fn task_arithmetic_matches_mergekit() {
    let f = Fixture::load();
    matches_reference(&f, "task_arithmetic");
    matches_reference(&f, "task_arithmetic_normalized_lambda");
}

#[test]
fn ties_matches_mergekit() {
    let f = Fixture::load();
    matches_reference(&f, "ties");
    matches_reference(&f, "ties_per_model");
    matches_reference(&f, "ties_rescaled");
}

fn merged(models: &[&Tensor], base: &Tensor, o: &MergeOptions) -> Tensor {
    merge_tensor("w", models, Some(base), o).unwrap_or_else(|e| panic!("{}: {e}", o.method.name()))
}

#[test]
fn dare_at_density_one_is_the_method_without_drops() {
    let f = Fixture::load();
    let (models, base) = ([f.t("m0.a"), f.t("m1.a"), f.t("m2.a")], f.t("base.a"));
    let weights = vec![0.6, 0.3, 0.8];
    let with = |method: Method, normalize: Option<bool>| MergeOptions { weights: weights.clone(), density: vec![1.0], normalize, seed: 5, ..MergeOptions::new(method) };
    let dare_linear = merged(&models, base, &with(Method::DareLinear, None));
    let task_arithmetic = merged(&models, base, &MergeOptions { weights: weights.clone(), ..MergeOptions::new(Method::TaskArithmetic) });
    assert!(max_abs_diff(&dare_linear, &task_arithmetic) <= 1e-6, "dare_linear(density 1) == task_arithmetic");
    for normalize in [false, true] {
        let dare_ties = merged(&models, base, &with(Method::DareTies, Some(normalize)));
        let ties = merged(&models, base, &with(Method::Ties, Some(normalize)));
        assert!(max_abs_diff(&dare_ties, &ties) <= 1e-6, "dare_ties(density 1) == ties(density 1), normalize={normalize}");
    }
}

/// Two task vectors over 100k entries, τ₀ = 1 and τ₁ = 1000 everywhere, so each merged
/// entry says which of them DARE kept.
#[test]
fn dare_keeps_about_density_of_each_task_vector_and_rescales_it() {
    const N: i64 = 100_000;
    const DENSITY: f64 = 0.3;
    let base = Tensor::linspace(-1.0, 1.0, N, (Kind::Float, Device::Cpu));
    let (m0, m1) = (&base + 1.0, &base + 1000.0);
    for method in [Method::DareLinear, Method::DareTies] {
        let o = MergeOptions { density: vec![DENSITY], seed: 11, ..MergeOptions::new(method) };
        let one = merged(&[&m0], &base, &o);
        let kept = (&one - &base).abs().gt(0.5);
        let fraction = kept.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
        assert!((fraction - DENSITY).abs() <= 0.05, "{}: kept {fraction} of the task vector", method.name());
        let kept_values = (&one - &base).masked_select(&kept);
        let scale_error = (kept_values - 1.0 / DENSITY).abs().max().double_value(&[]);
        assert!(scale_error < 1e-3, "{}: kept entries are τ / density (off by {scale_error})", method.name());
    }

    let o = MergeOptions { density: vec![DENSITY], seed: 11, ..MergeOptions::new(Method::DareLinear) };
    let both = merged(&[&m0, &m1], &base, &o);
    // (both − base)·density ∈ {0, 1, 1000, 1001}
    let code = ((&both - &base) * DENSITY).round();
    let kept0 = code.fmod(1000.0).eq(1.0);
    let kept1 = code.ge(999.0);
    let mean = |t: &Tensor| t.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
    for (i, kept) in [&kept0, &kept1].into_iter().enumerate() {
        assert!((mean(kept) - DENSITY).abs() <= 0.05, "task vector {i}: kept {}", mean(kept));
    }
    // Each task vector has its own mask: they overlap about density² of the time.
    let overlap = mean(&kept0.logical_and(&kept1));
    assert!((overlap - DENSITY * DENSITY).abs() <= 0.02, "masks overlap {overlap}, want ≈ {}", DENSITY * DENSITY);
}

#[test]
fn dare_repeats_with_a_seed_and_changes_with_another() {
    let base = Tensor::linspace(-1.0, 1.0, 10_000, (Kind::Float, Device::Cpu));
    let model = &base * 2.0 + 0.5;
    let run = |seed| merged(&[&model], &base, &MergeOptions { density: vec![0.5], seed, ..MergeOptions::new(Method::DareTies) });
    assert!(run(3).equal(&run(3)), "the same seed gives the same merge");
    assert!(!run(3).equal(&run(4)), "another seed gives another mask");
}

fn state(entries: &[(&str, &[i64])]) -> BTreeMap<String, Tensor> {
    entries.iter().map(|(n, s)| (n.to_string(), Tensor::zeros(*s, (Kind::Float, Device::Cpu)))).collect()
}

fn merge_error(models: &[BTreeMap<String, Tensor>], base: Option<&BTreeMap<String, Tensor>>, o: &MergeOptions) -> String {
    let e = merge_states(models, base, o).expect_err("the merge must fail");
    assert!(!e.contains('\n'), "one line: {e}");
    e
}

#[test]
fn mismatched_shapes_and_missing_names_are_one_line_errors() {
    const UP: &str = "model.layers.0.mlp.up_proj.weight";
    const NORM: &str = "model.norm.weight";
    let small = state(&[(UP, &[64, 128]), (NORM, &[64])]);
    let wide = state(&[(UP, &[64, 176]), (NORM, &[64])]);
    let no_norm = state(&[(UP, &[64, 128])]);
    let extra = state(&[(UP, &[64, 128]), (NORM, &[64]), ("lm_head.weight", &[10, 64])]);
    let linear = MergeOptions::new(Method::Linear);
    assert_eq!(
        merge_error(&[small.clone_state(), wide], None, &linear),
        "model 2 has model.layers.0.mlp.up_proj.weight of shape [64, 176], model 1 [64, 128]: merge needs models of the same architecture"
    );
    assert_eq!(
        merge_error(&[small.clone_state(), no_norm.clone_state()], None, &linear),
        "model 2 has no tensor model.norm.weight (model 1 has it): merge needs models of the same architecture"
    );
    assert_eq!(
        merge_error(&[small.clone_state(), extra], None, &linear),
        "model 2 has lm_head.weight, which model 1 lacks: merge needs models of the same architecture"
    );
    let ties = MergeOptions::new(Method::Ties);
    assert_eq!(
        merge_error(&[small.clone_state()], Some(&no_norm), &ties),
        "the base model has no tensor model.norm.weight (model 1 has it): merge needs models of the same architecture"
    );
    let e = average(&[small.clone_state(), state(&[(UP, &[64, 128]), (NORM, &[65])])]).expect_err("average must fail");
    assert_eq!(e, "checkpoint 2 has model.norm.weight of shape [65], checkpoint 1 [64]: average needs checkpoints of the same architecture");
}

#[test]
fn slerp_needs_a_base_and_exactly_one_other_model() {
    let x = state(&[("w", &[4])]);
    let slerp = MergeOptions { t: 0.3, ..MergeOptions::new(Method::Slerp) };
    let e = merge_error(&[x.clone_state(), x.clone_state()], Some(&x), &slerp);
    assert!(e.contains("exactly two models") && e.contains("the base and 2 others"), "{e}");
    let e = merge_error(&[x.clone_state()], None, &slerp);
    assert!(e.contains("slerp needs a base model"), "{e}");
    let e = merge_error(&[x.clone_state()], None, &MergeOptions::new(Method::Ties));
    assert!(e.contains("ties adds task vectors") && e.contains("pass base"), "{e}");
}

#[test]
fn options_that_do_not_fit_the_method_are_refused() {
    let x = state(&[("w", &[4])]);
    let cases = [
        (MergeOptions { weights: vec![1.0, 2.0], ..MergeOptions::new(Method::Linear) }, "1 model but 2 weights"),
        (MergeOptions { density: vec![0.5], ..MergeOptions::new(Method::TaskArithmetic) }, "density does not apply"),
        (MergeOptions { density: vec![1.5], ..MergeOptions::new(Method::Ties) }, "density 1.5 is outside (0, 1]"),
        (MergeOptions { weights: vec![1.0], ..MergeOptions::new(Method::Slerp) }, "slerp takes t, not weights"),
        (MergeOptions { lambda: 2.0, ..MergeOptions::new(Method::Linear) }, "lambda does not apply"),
    ];
    for (o, want) in cases {
        let base = o.method.needs_base().then_some(&x);
        let e = merge_error(&[x.clone_state()], base, &o);
        assert!(e.contains(want), "{}: {e}", o.method.name());
    }
    let e = merge_tensor("tiny", &[&Tensor::ones([4], (Kind::Float, Device::Cpu))], Some(&Tensor::zeros([4], (Kind::Float, Device::Cpu))), &MergeOptions { density: vec![0.1], ..MergeOptions::new(Method::Ties) })
        .expect_err("ties keeps nothing of 4 entries at density 0.1");
    assert!(e.contains("keeps no entry of tiny") && e.contains("raise density"), "{e}");
}

#[test]
fn method_names_round_trip_and_defaults_follow_mergekit() {
    for name in Method::NAMES {
        assert_eq!(Method::parse(name).expect("a method").name(), *name);
    }
    let e = Method::parse("dare").expect_err("not a method");
    assert!(e.contains("unknown merge method `dare`") && e.contains("dare_ties"), "{e}");
    let defaults: Vec<(&str, bool, bool)> = Method::ALL.iter().map(|m| (m.name(), m.default_normalize(), m.default_rescale())).collect();
    assert_eq!(
        defaults,
        [
            ("linear", true, false),
            ("slerp", false, false),
            ("ties", true, false),
            ("dare_ties", false, true),
            ("dare_linear", false, true),
            ("task_arithmetic", false, false),
        ]
    );
}

#[test]
fn average_is_the_elementwise_mean_in_f32() {
    let a: BTreeMap<String, Tensor> = [("w".to_string(), Tensor::from_slice(&[1.0f64, 2.0, 3.0]))].into();
    let b: BTreeMap<String, Tensor> = [("w".to_string(), Tensor::from_slice(&[3.0f64, 6.0, -3.0]))].into();
    let mean = average(&[a, b]).expect("same architecture");
    assert_eq!(mean["w"].kind(), Kind::Float);
    assert!(max_abs_diff(&mean["w"], &Tensor::from_slice(&[2.0f32, 4.0, 0.0])) == 0.0);
}

/// BTreeMap<String, Tensor> is not Clone (Tensor is not): shallow copies share storage.
trait CloneState {
    fn clone_state(&self) -> Self;
}

impl CloneState for BTreeMap<String, Tensor> {
    fn clone_state(&self) -> Self {
        self.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect()
    }
}
