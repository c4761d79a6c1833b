//! `containment-operator get` (installed as the kubectl plugin `kubectl containment get`): every
//! containment in one table that fits a terminal. `kubectl get containment -A` prints one table
//! per kind and prefixes each name with `kind.group/` (up to 54 characters), which no printer
//! column can shorten; this view names each row `shortname/name` instead, the form
//! `kubectl describe` accepts, and truncates TARGET (then NAME) to the width asked for.

use std::fmt::Write as _;

use futures::future::join_all;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;

/// One containment as the table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub namespace: String,
    /// `shortname/name`.
    pub name: String,
    pub target: String,
    pub mode: String,
    pub ready: String,
    pub reason: String,
    pub drifts: String,
    pub age: String,
}

const HEADERS: [&str; 8] = [
    "NAMESPACE",
    "NAME",
    "TARGET",
    "MODE",
    "READY",
    "REASON",
    "DRIFTS",
    "AGE",
];
const GAP: usize = 3;
/// Columns are never truncated below these widths (TARGET, NAME).
const MIN_TARGET: usize = 12;
const MIN_NAME: usize = 24;

/// The row for one object of the kind with short name `short`; `now` in Unix seconds.
pub fn row(short: &str, obj: &Value, now: i64) -> Row {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".to_string(),
        v => v.to_string(),
    };
    let ready = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    let created = obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    Row {
        namespace: text(&obj["metadata"]["namespace"]),
        name: format!("{short}/{}", text(&obj["metadata"]["name"])),
        target: text(&obj["status"]["targetName"]),
        mode: text(&obj["spec"]["mode"]),
        ready: text(&ready["status"]),
        reason: text(&ready["reason"]),
        drifts: match &obj["status"]["driftCount"] {
            Value::Null => "0".to_string(),
            v => text(v),
        },
        age: created.map_or("<unknown>".into(), |t| age(now - t.as_second())),
    }
}

/// kubectl's short age: seconds under 2 minutes, then minutes, hours, days.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The table, sorted by namespace and name, at most `width` columns wide when that is possible
/// (`width` 0: no limit). Without `all_namespaces` the NAMESPACE column is left out, as kubectl does.
pub fn render(rows: &[Row], all_namespaces: bool, width: usize) -> String {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let skip = usize::from(!all_namespaces);
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.namespace.clone(),
                r.name.clone(),
                r.target.clone(),
                r.mode.clone(),
                r.ready.clone(),
                r.reason.clone(),
                r.drifts.clone(),
                r.age.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len()).collect();
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    if width > 0 {
        let total = |w: &[usize]| w[skip..].iter().sum::<usize>() + GAP * (w.len() - skip - 1);
        for (col, floor) in [(2, MIN_TARGET), (1, MIN_NAME)] {
            let over = total(&widths).saturating_sub(width);
            let floor = floor.max(HEADERS[col].len());
            widths[col] -= over.min(widths[col].saturating_sub(floor));
        }
    }
    let mut out = String::new();
    let headers = HEADERS.map(String::from);
    for line in std::iter::once(&headers).chain(&cells) {
        let mut text = String::new();
        for (i, v) in line.iter().enumerate().skip(skip) {
            let cell = truncate(v, widths[i]);
            if i + 1 < line.len() {
                let pad = widths[i] - cell.chars().count() + GAP;
                let _ = write!(text, "{cell}{:pad$}", "");
            } else {
                text.push_str(&cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

fn truncate(v: &str, width: usize) -> String {
    if v.chars().count() <= width {
        return v.to_string();
    }
    let mut s: String = v.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// The containment kinds this build serves (not ContainmentPolicy or ContainmentApproval).
fn containment_crds() -> Vec<CustomResourceDefinition> {
    crate::api::crds()
        .into_iter()
        .filter(|c| {
            crate::kinds::KINDS
                .iter()
                .any(|k| k.kind == c.spec.names.kind)
        })
        .collect()
}

/// Every containment in `namespace` (all namespaces when `None`). A kind whose CRD is not
/// installed is skipped; any other failure names the kind.
pub async fn list(client: kube::Client, namespace: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let now = jiff::Timestamp::now().as_second();
    let lists = containment_crds().into_iter().map(|crd| {
        let client = client.clone();
        async move {
            let names = &crd.spec.names;
            let ar = ApiResource {
                group: crd.spec.group.clone(),
                version: crd.spec.versions[0].name.clone(),
                api_version: format!("{}/{}", crd.spec.group, crd.spec.versions[0].name),
                kind: names.kind.clone(),
                plural: names.plural.clone(),
            };
            let short = names
                .short_names
                .as_ref()
                .and_then(|s| s.first())
                .cloned()
                .unwrap_or_else(|| names.kind.to_lowercase());
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client, ns, &ar),
                None => Api::all_with(client, &ar),
            };
            match api.list(&ListParams::default()).await {
                Ok(list) => Ok(list
                    .items
                    .iter()
                    .map(|o| row(&short, &serde_json::to_value(o).unwrap_or_default(), now))
                    .collect()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
                Err(e) => Err(anyhow::anyhow!("listing {}: {e}", names.plural)),
            }
        }
    });
    let mut rows = Vec::new();
    for result in join_all(lists).await {
        rows.extend(result?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(ns: &str, name: &str, target: &str) -> Row {
        Row {
            namespace: ns.into(),
            name: name.into(),
            target: target.into(),
            mode: "Enforce".into(),
            ready: "True".into(),
            reason: "Contained".into(),
            drifts: "0".into(),
            age: "5m".into(),
        }
    }

    #[test]
    fn a_row_reads_the_ready_condition_target_and_age() {
        let obj = json!({
            "metadata": {"namespace": "soc", "name": "inc-1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"mode": "DryRun"},
            "status": {"targetName": "sql-prod-01", "driftCount": 2, "conditions": [
                {"type": "Reconciling", "status": "False", "reason": "Done"},
                {"type": "Ready", "status": "True", "reason": "Contained"}]}
        });
        let now = "2026-01-01T03:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second();
        let r = row("sqlipb", &obj, now);
        assert_eq!(r.name, "sqlipb/inc-1");
        assert_eq!(
            (r.target.as_str(), r.mode.as_str(), r.ready.as_str()),
            ("sql-prod-01", "DryRun", "True")
        );
        assert_eq!((r.reason.as_str(), r.drifts.as_str()), ("Contained", "2"));
        assert_eq!(r.age, "3h");
        let fresh = row("sqlipb", &json!({"metadata": {"name": "x"}}), now);
        assert_eq!(
            (fresh.ready.as_str(), fresh.drifts.as_str()),
            ("<none>", "0")
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(-3), "0s");
        assert_eq!(age(119), "119s");
        assert_eq!(age(150), "2m");
        assert_eq!(age(7300), "2h");
        assert_eq!(age(3 * 86_400), "3d");
    }

    #[test]
    fn the_table_fits_the_width_by_truncating_target_then_name() {
        let rows = [
            sample(
                "containment-demo",
                "spc/inc-4732-legacy-sync",
                "55555555-0000-4000-8000-000000000005",
            ),
            sample(
                "containment-demo",
                "deviso/inc-4721-credential-theft",
                "ws-finance-07.corp.contoso.example",
            ),
        ];
        let wide = render(&rows, true, 0);
        assert!(
            wide.contains("ws-finance-07.corp.contoso.example"),
            "{wide}"
        );
        for width in [120, 110] {
            let table = render(&rows, true, width);
            for line in table.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}\n{table}");
            }
            assert!(table.contains('…'), "{table}");
        }
        let t = render(&rows, true, 120);
        // TARGET is cut first: the names survive whole at 120 columns.
        assert!(t.contains("deviso/inc-4721-credential-theft "), "{t}");
        assert!(t.contains("55555555-0000-4000-"), "{t}");
        // Sorted by name; the header first.
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   "), "{t}");
        assert!(
            lines[1].contains("deviso/") && lines[2].contains("spc/"),
            "{t}"
        );
        // Floors: never narrower than MIN_TARGET / MIN_NAME, even if the width cannot be met.
        let narrow = render(&rows, true, 40);
        assert!(narrow.contains("55555555-00…"), "{narrow}");
        assert!(narrow.contains("deviso/inc-4721-credent…"), "{narrow}");
    }

    #[test]
    fn one_namespace_leaves_the_namespace_column_out() {
        let t = render(&[sample("soc", "sqlipb/inc-1", "sql-prod-01")], false, 120);
        assert_eq!(
            t,
            "NAME           TARGET        MODE      READY   REASON      DRIFTS   AGE\n\
             sqlipb/inc-1   sql-prod-01   Enforce   True    Contained   0        5m\n"
        );
    }
}
