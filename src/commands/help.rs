//! The long help of each subcommand: what it takes, and examples that can be copied. The
//! man pages are made from the same text.

use crate::exit::TABLE;

/// `run`: actions, the input's columns, examples, exit codes.
pub(crate) fn run() -> String {
    format!(
        "\
Actions (the action column, or --action for every row):
  activate          status active (pendingProvision first where the provider delays it)
  deactivate        status available
  suspend           customerSuspend true (an active SIM)
  unsuspend         customerSuspend false
  set-package       packageId = value (a number)            alias: change-package
  set-portfolio     portfolioId = value                      alias: change-portfolio
  set-attribute     attribute = value (created if absent)
  delete-attribute  attribute removed

Input: a CSV (comma, semicolon or TAB; UTF-8, a BOM is fine) with a header line naming an
iccid column and usually action, value and attribute columns; other columns are carried to
the results. Or a plain list of ICCIDs, one per line, with --action. Or a spreadsheet
(.xlsx, .xls, .xlsb, .ods): its first visible sheet, or --sheet NAME, read the same way.

Examples:
  simbulk run shipment.txt --action activate --dry-run
  simbulk run shipment.xlsx --sheet \"Batch 7\" --action activate
  simbulk run migrate.csv --action set-package --value 20533 --preview   # predicted, no change
  simbulk run migrate.csv --action set-package --value 20533 --until 05:30 --change-ref CHG-1
  simbulk run migrate.csv --resume          # the next night, where it stopped
  simbulk --profile prod run tags.csv       # connection and pacing from a profile

{TABLE}"
    )
}

/// `apply`.
pub(crate) fn apply() -> String {
    format!(
        "\
Examples:
  simbulk export -o fleet.csv                      # the fleet as it is
  simbulk apply fleet.csv --plan-only              # edit fleet.csv, then see the plan
  simbulk apply fleet.csv --yes --change-ref CHG-7 # make the fleet so
  simbulk apply fleet.csv --drift                  # drift: exit 1 when the fleet differs

{TABLE}"
    )
}

pub(crate) const EXPORT: &str = "\
Examples:
  simbulk export --status active --package-id 20417 -o active-20417.csv
  simbulk export --iccid-file shipment.txt --with-attributes -o shipment-state.csv
  simbulk export --portfolio-id pf-acme-eu | head";

pub(crate) const REPORT: &str = "\
Examples:
  simbulk report migrate.results.csv
  simbulk report migrate.results.csv --html migrate.html     # to open or mail
  simbulk report migrate.preview.csv                        # a preview, before sign-off";

pub(crate) const UNDO: &str = "\
Examples:
  simbulk undo migrate.results.csv && simbulk run migrate.undo.csv --yes";

pub(crate) const DEMO: &str = "\
Examples:
  simbulk demo                 # three sample jobs against an embedded, faulty simulator";

pub(crate) const SIM: &str = "\
Examples:
  simbulk sim --addr 127.0.0.1:8080 --rate-limit 10 --http503 0.02 --activation-delay 5s
  simbulk sim --state-file sim.json        # keep the fleet across restarts";

pub(crate) const BENCH: &str = "\
Examples:
  simbulk bench --mix toggle --rows 20000 --sims 20000
  simbulk bench --rate 50 --sim-rate-limit 50";

pub(crate) const CONFIG: &str = "\
Examples:
  simbulk config show                 # effective settings of run, with their sources
  simbulk config show --for export
  simbulk --profile prod config show

A config file ($XDG_CONFIG_HOME/simbulk/config.toml, or --config / SIMBULK_CONFIG):
  default-profile = \"staging\"
  [profiles.prod]
  provider = \"eseye\"
  region = \"eu-west-1\"
  client-id = \"abc123\"
  client-secret-file = \"~/.config/simbulk/prod.secret\"   # chmod 600
  rate = 10
  [profiles.prod.wire]
  suspend = \"yes-no\"";

pub(crate) const MAN: &str = "\
Examples:
  simbulk man > simbulk.1
  simbulk man --dir /usr/local/share/man/man1     # one page per subcommand";
