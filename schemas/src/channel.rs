//! The default channel of a launch: how the user got into the mini-program, from its scene value
//! and its `utm_medium` (DESIGN.md "Channels").
//!
//! The scene values and their meanings are WeChat's published list (小程序场景值列表,
//! developers.weixin.qq.com, "场景值"); each channel gathers the values of one way in. A paid
//! `utm_medium` is an ad whatever the scene; a launch without a scene value is `direct`; a
//! scene value of no channel here is `other`.

/// The channels, each with the scene values it gathers.
pub const CHANNELS: [(&str, &[i32]); 8] = [
    // 扫描 / 长按识别 / 相册选取 小程序码.
    ("mini_program_code", &[1047, 1048, 1049]),
    // 二维码 and 一维码, scanned, long-pressed or from the album.
    (
        "qr_code",
        &[1011, 1012, 1013, 1025, 1031, 1032, 1124, 1125, 1126],
    ),
    // 单人 / 群聊 小程序消息卡片, 带 shareTicket 的卡片, App 分享消息卡片, 朋友圈单页.
    ("shared_card", &[1007, 1008, 1036, 1044, 1154, 1155]),
    // 公众号: profile, 自定义菜单, 模板消息, 文章, 会话下发的卡片与文字链, 文章商品卡片.
    (
        "official_account",
        &[1020, 1035, 1043, 1058, 1074, 1082, 1091, 1102],
    ),
    // 小程序打开小程序, 从另一个小程序返回.
    ("mini_program", &[1037, 1038]),
    // 搜索结果页, 「使用过的小程序」, 添加好友搜索, 搜一搜, 搜索快捷入口.
    ("search", &[1005, 1006, 1027, 1042, 1053, 1054]),
    // 朋友圈广告 and its detail page, 公众号文章广告, 附近小程序广告, 小程序广告.
    ("ads", &[1045, 1046, 1067, 1068, 1084, 1095]),
    // 发现栏「最近使用」, 收藏, 桌面图标, 下拉任务栏, 右上角菜单, 我的小程序, 浮窗.
    ("recents", &[1001, 1010, 1023, 1089, 1090, 1103, 1104, 1131]),
];

/// `utm_medium` values of paid placements (case-insensitive).
pub const PAID_MEDIA: [&str; 6] = ["cpc", "ppc", "cpm", "paid", "ad", "ads"];

/// A launch without a scene value.
pub const DIRECT: &str = "direct";
/// A scene value of no channel.
pub const OTHER: &str = "other";

/// The channel of a launch.
pub fn channel_of(scene: Option<i32>, utm_medium: Option<&str>) -> &'static str {
    if utm_medium.is_some_and(|m| PAID_MEDIA.iter().any(|p| p.eq_ignore_ascii_case(m))) {
        return "ads";
    }
    let Some(scene) = scene else {
        return DIRECT;
    };
    CHANNELS
        .iter()
        .find(|(_, scenes)| scenes.contains(&scene))
        .map_or(OTHER, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_and_paid_media_give_channels() {
        assert_eq!(channel_of(Some(1047), None), "mini_program_code");
        assert_eq!(channel_of(Some(1012), Some("poster")), "qr_code");
        assert_eq!(channel_of(Some(1007), None), "shared_card");
        assert_eq!(channel_of(Some(1035), None), "official_account");
        assert_eq!(channel_of(Some(1047), Some("CPC")), "ads");
        assert_eq!(channel_of(None, None), "direct");
        assert_eq!(channel_of(Some(1999), None), "other");
        // Every scene value is in one channel at most.
        let mut seen = std::collections::HashSet::new();
        for (_, scenes) in CHANNELS {
            for scene in scenes {
                assert!(seen.insert(scene), "{scene} twice");
            }
        }
    }
}
