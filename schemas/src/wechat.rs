//! WeChat's errcodes of the code and token endpoints, in plain words: one table for the plugin
//! and the host (DESIGN.md §2).

/// What a WeChat errcode means for the person making codes, and what to do.
pub fn errcode_meaning(errcode: i32) -> &'static str {
    match errcode {
        -1 => "WeChat is busy; try again in a moment",
        40001 | 42001 => "the access token was invalid or expired (the host refreshes it)",
        40013 | 40125 => "the AppID or AppSecret is wrong",
        40097 => "invalid env_version: use release, trial or develop",
        40129 => "the scene holds a character WeChat does not accept",
        40159 => "the path is longer than WeChat accepts",
        40169 => "the scene is longer than 32 characters",
        40189 => "invalid width: WeChat accepts 280 to 1280 pixels",
        41030 => {
            "the page does not exist or is not published; publish it, or make a B code with \
             check_path off for a page under development"
        }
        45009 => "WeChat's call limit (per minute or per day) is reached; try again later",
        45029 => {
            "the mini-program has used its 100,000 A and C codes; make B codes, which are unlimited"
        }
        45063 => "this mini-program has no permission for this interface",
        _ => "see WeChat's documentation of this errcode",
    }
}
