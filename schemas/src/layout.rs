//! The data directory's layout: every folder promolens writes, named here only (paths are
//! relative to the data directory; DESIGN.md "Storage layout" describes them).

/// `table/project=P`: a project's folder of a table (`launch_events`, `user_first_seen`,
/// `audit_log`, and the plugin's record collections under `codes/`).
pub fn project_dir(table: &str, project: &str) -> String {
    format!("{table}/project={project}")
}

/// `table/project=P/dt=D`: one day's partition.
pub fn day_dir(table: &str, project: &str, dt: &str) -> String {
    format!("{}/dt={dt}", project_dir(table, project))
}

/// `secrets/project=P/wechat`: the project's encrypted WeChat credentials.
pub fn wechat_credentials(project: &str) -> String {
    format!("{}/wechat", project_dir("secrets", project))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_style_folders() {
        assert_eq!(project_dir("launch_events", "p"), "launch_events/project=p");
        assert_eq!(
            day_dir("launch_events", "p", "2025-11-24"),
            "launch_events/project=p/dt=2025-11-24"
        );
        assert_eq!(wechat_credentials("p"), "secrets/project=p/wechat");
    }
}
