//! `graph=` on `train` and `generate`: whether a step is captured once as a CUDA graph
//! and replayed, and what a run says when it cannot be.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphMode {
    /// Captured wherever it can be (CUDA, the shim built, nothing on the host inside a
    /// step); eager elsewhere, silently.
    Auto,
    /// Captured, or eager with a line that says why not.
    On,
    Off,
}

impl GraphMode {
    pub fn parse(name: &str) -> Result<GraphMode, String> {
        match name {
            "auto" => Ok(GraphMode::Auto),
            "on" => Ok(GraphMode::On),
            "off" => Ok(GraphMode::Off),
            other => Err(format!("graph is \"auto\", \"on\" or \"off\", not {other:?}")),
        }
    }

    /// Whether to capture, given why this work cannot be (`None`: it can), and the line
    /// to print when `on` was asked for and cannot be had.
    pub fn decide(self, why_eager: Option<String>) -> (bool, Option<String>) {
        match (self, why_eager) {
            (GraphMode::Off, _) => (false, None),
            (GraphMode::On, Some(why)) => (false, Some(format!("graph=\"on\": running eager, since {why}"))),
            // `auto` says nothing where graphs were never on offer.
            (GraphMode::Auto, Some(_)) => (false, None),
            (_, None) => (true, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_names_the_reason_and_auto_stays_quiet() {
        let why = || Some("no GPU".to_string());
        assert_eq!(GraphMode::On.decide(why()), (false, Some("graph=\"on\": running eager, since no GPU".into())));
        assert_eq!(GraphMode::Auto.decide(why()), (false, None));
        assert_eq!(GraphMode::Off.decide(None), (false, None));
        assert_eq!(GraphMode::Auto.decide(None), (true, None));
        assert!(GraphMode::parse("yes").unwrap_err().contains("\"on\""));
    }
}
