//! The terms of the standing grant an approved request carries.

use crate::grant::GrantTerms;
use crate::request::{ApprovalRequest, Decision};

/// The standing grant an approved request carries: issued only if every approver whose
/// approval filled a factor asked for one, with the tightest terms among them (shortest
/// duration, fewest uses, every condition joined with `&&`). `None` otherwise.
pub fn grant_terms(request: &ApprovalRequest) -> Option<GrantTerms> {
    let Some(Decision::Approved { by, .. }) = request.decision() else {
        return None;
    };
    let mut terms: Option<GrantTerms> = None;
    for approver in by {
        let asked = request
            .reviews
            .iter()
            .find(|r| r.review.reviewer.same_party(approver))?
            .review
            .grant
            .as_ref()?;
        terms = Some(match terms {
            None => asked.clone(),
            Some(t) => GrantTerms {
                duration: t.duration.min(asked.duration),
                uses: t.uses.min(asked.uses),
                when: match (t.when, &asked.when) {
                    (None, w) => w.clone(),
                    (w, None) => w,
                    (Some(a), Some(b)) if a == *b => Some(a),
                    (Some(a), Some(b)) => Some(format!("({a}) && ({b})")),
                },
            },
        });
    }
    terms.filter(|t| t.within(&request.requirement.grants).is_ok())
}
