//! Name scopes. A scope is shared (`Rc<RefCell<..>>`) because `def`s capture the scope
//! they were defined in and stages open child scopes.

use super::value::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Default)]
pub struct Scope {
    names: BTreeMap<String, Value>,
    parent: Option<Rc<RefCell<Scope>>>,
}

impl Scope {
    pub fn child(parent: &Rc<RefCell<Scope>>) -> Rc<RefCell<Scope>> {
        Rc::new(RefCell::new(Scope { names: BTreeMap::new(), parent: Some(parent.clone()) }))
    }

    pub fn get(&self, name: &str) -> Option<Value> {
        match self.names.get(name) {
            Some(v) => Some(v.clone()),
            None => self.parent.as_ref().and_then(|p| p.borrow().get(name)),
        }
    }

    pub fn define(&mut self, name: &str, value: Value) {
        self.names.insert(name.to_string(), value);
    }

    /// Assigns where the name already lives (an outer scope), else defines it here.
    pub fn assign(&mut self, name: &str, value: Value) {
        if self.names.contains_key(name) {
            self.names.insert(name.to_string(), value);
            return;
        }
        if let Some(p) = &self.parent {
            if p.borrow().get(name).is_some() {
                p.borrow_mut().assign(name, value);
                return;
            }
        }
        self.names.insert(name.to_string(), value);
    }

    /// Names defined in this scope alone (what a module exports).
    pub fn own_names(&self) -> &BTreeMap<String, Value> {
        &self.names
    }

    /// Every visible name, for completion.
    pub fn all_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.names.keys().cloned().collect();
        if let Some(p) = &self.parent {
            out.extend(p.borrow().all_names());
        }
        out.sort();
        out.dedup();
        out
    }
}
