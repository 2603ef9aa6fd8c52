//! A verified Stripe event, read into what the ledger needs: which payment it belongs to
//! and the facts it states. Only the fields we use are read; the raw JSON is kept as
//! text in the event log.

use std::collections::BTreeMap;

use serde_json::Value;

/// The event types that change the ledger; every other type is stored and ignored.
pub const HANDLED: [&str; 10] = [
    "checkout.session.completed",
    "checkout.session.expired",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "charge.succeeded",
    "charge.refunded",
    "charge.dispute.created",
    "invoice.paid",
    "invoice.payment_failed",
];

/// The envelope of an event.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub kind: String,
    /// Unix seconds (Stripe's `created`).
    pub created: i64,
    pub livemode: bool,
    pub object: Value,
}

/// Read the envelope. The message says what is wrong (it becomes a `400`).
pub fn parse(body: &[u8]) -> Result<Incoming, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| id.starts_with("evt_") && id.len() <= 255)
        .ok_or("bad JSON: the event has no evt_… id")?
        .to_string();
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= 255)
        .ok_or("bad JSON: the event has no type")?
        .to_string();
    let created = v.get("created").and_then(Value::as_i64).unwrap_or(0);
    let livemode = v.get("livemode").and_then(Value::as_bool).unwrap_or(false);
    let object = v
        .pointer("/data/object")
        .filter(|o| o.is_object())
        .cloned()
        .ok_or("bad JSON: the event has no data.object")?;
    Ok(Incoming {
        id,
        kind,
        created,
        livemode,
        object,
    })
}

/// The object an event is about, as the ledger sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectFacts {
    /// `cs_…`, `pi_…`, `ch_…`, `in_…` or `dp_…`.
    pub id: String,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub customer: Option<String>,
    pub email: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

/// What an event says happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    SessionCompleted {
        paid: bool,
    },
    SessionExpired,
    IntentSucceeded,
    IntentFailed {
        error: String,
    },
    IntentCanceled {
        reason: String,
    },
    ChargeSucceeded,
    /// Stripe's charge carries the cumulative refunded amount.
    ChargeRefunded {
        amount_refunded: i64,
    },
    Dispute {
        amount: i64,
        reason: String,
    },
    InvoicePaid,
    InvoiceFailed,
}

/// The facts of a handled event; `Ok(None)` for a type we do not handle.
pub fn facts(ev: &Incoming) -> Result<Option<(ObjectFacts, Fact)>, String> {
    if !HANDLED.contains(&ev.kind.as_str()) {
        return Ok(None);
    }
    let o = &ev.object;
    let id = str_field(o, "id").ok_or("data.object has no id")?;
    let amount_key = match ev.kind.as_str() {
        k if k.starts_with("checkout.session") => "amount_total",
        k if k.starts_with("invoice.") => "amount_due",
        _ => "amount",
    };
    let facts = ObjectFacts {
        id,
        payment_intent: id_field(o, "payment_intent"),
        charge: id_field(o, "charge"),
        amount: o.get(amount_key).and_then(Value::as_i64),
        currency: str_field(o, "currency").map(|c| c.to_ascii_lowercase()),
        customer: id_field(o, "customer"),
        email: o
            .pointer("/customer_details/email")
            .and_then(Value::as_str)
            .or_else(|| o.get("receipt_email").and_then(Value::as_str))
            .or_else(|| o.get("customer_email").and_then(Value::as_str))
            .map(str::to_string),
        metadata: o
            .get("metadata")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let v = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        created: o
            .get("created")
            .and_then(Value::as_i64)
            .unwrap_or(ev.created),
    };
    if let Some(a) = facts.amount
        && a < 0
    {
        return Err(format!("{amount_key} is negative"));
    }
    let fact = match ev.kind.as_str() {
        "checkout.session.completed" => Fact::SessionCompleted {
            paid: matches!(
                o.get("payment_status").and_then(Value::as_str),
                Some("paid") | Some("no_payment_required")
            ),
        },
        "checkout.session.expired" => Fact::SessionExpired,
        "payment_intent.succeeded" => Fact::IntentSucceeded,
        "payment_intent.payment_failed" => Fact::IntentFailed {
            error: o
                .pointer("/last_payment_error/message")
                .and_then(Value::as_str)
                .unwrap_or("payment failed")
                .to_string(),
        },
        "payment_intent.canceled" => Fact::IntentCanceled {
            reason: str_field(o, "cancellation_reason").unwrap_or_default(),
        },
        "charge.succeeded" => Fact::ChargeSucceeded,
        "charge.refunded" => Fact::ChargeRefunded {
            amount_refunded: o
                .get("amount_refunded")
                .and_then(Value::as_i64)
                .filter(|a| *a >= 0)
                .ok_or("charge.refunded without amount_refunded")?,
        },
        "charge.dispute.created" => Fact::Dispute {
            amount: facts.amount.unwrap_or(0),
            reason: str_field(o, "reason").unwrap_or_default(),
        },
        "invoice.paid" => Fact::InvoicePaid,
        "invoice.payment_failed" => Fact::InvoiceFailed,
        _ => return Ok(None),
    };
    Ok(Some((facts, fact)))
}

fn str_field(o: &Value, k: &str) -> Option<String> {
    o.get(k).and_then(Value::as_str).map(str::to_string)
}

/// A reference that may be an id or an expanded object.
fn id_field(o: &Value, k: &str) -> Option<String> {
    match o.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}
