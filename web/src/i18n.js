// The pages in Chinese and English, as the notifications are. The choice is
// kept in localStorage (a preference, not a secret); the first visit follows
// the browser's language.

const STRINGS = {
  en: {
    shop: "Shop", console: "Admin console", language: "中文", signIn: "Sign in", signUp: "Sign up", signOut: "Sign out",
    welcomeTitle: "Welcome to the shop",
    welcomeText: "Tea, mooncakes and goods for the home, with cashback on every paid order. Sign in or create an account to see the catalog and order.",
    email: "Email", password: "Password", passwordHint: "At least 12 characters with upper- and lower-case letters and a digit.",
    code: "Confirmation code", confirm: "Confirm", codeSent: "We sent a code to {email}. Enter it to confirm your address.",
    resend: "Send the code again", confirmed: "Your address is confirmed. Sign in.", haveAccount: "Already have an account? Sign in",
    noAccount: "New here? Sign up", catalog: "Catalog", all: "All", loadMore: "Load more", loading: "Loading…",
    inStock: "In stock", soldOut: "Sold out", lowStock: "Only a few left", quantity: "Quantity", order: "Order",
    signInToOrder: "Sign in to order", orders: "Orders", inbox: "Inbox", rebates: "Rebates", noOrders: "No orders yet.",
    noMessages: "No messages yet.", orderTitle: "Order {id}", status: "Status", total: "Total", payWith: "Pay with",
    ALIPAY: "Alipay", WECHAT_PAY: "WeChat Pay", CARD: "Card", pay: "Pay", openPayPage: "Open the payment page",
    scanQr: "Scan in WeChat: {code}", waiting: "Waiting for the payment…", cancel: "Cancel the order", confirmReceipt: "Confirm receipt",
    shipment: "Shipped by {carrier}, tracking number {tracking}", refundRequest: "Ask for a refund", reason: "Reason",
    returnGoods: "I will send the goods back", send: "Send", refundRequests: "Refund requests", balance: "Balance",
    pending: "Pending", available: "Available", withdraw: "Withdraw", amountYuan: "Amount (yuan)", channel: "To",
    account: "Account (Alipay logon id or WeChat openid)", accountName: "Real name (Alipay)", withdrawals: "Withdrawals",
    entries: "Entries", retryIn: "Too many requests: try again in {seconds} s.", notAdmin: "This account is not in the admin group.",
    products: "Products", stock: "Stock", stockShards: "Stock shards (flash sales)", reserved: "Reserved", setStock: "Set stock", saved: "Saved.", ship: "Ship",
    carrier: "Carrier", trackingNumber: "Tracking number",
    approve: "Approve", reject: "Reject", sales: "Sales", from: "From", to: "To", show: "Show", revenue: "Revenue",
    units: "Units", topProducts: "Top products", rules: "Rebate rules", save: "Save", nothing: "Nothing here.", noRulesYet: "No rebate rules are set yet: nothing earns a rebate until these are saved.",
    badAmount: "Enter an amount in yuan with at most two decimals.", newProduct: "New product", productId: "Product id",
    name: "Name", description: "Description", category: "Category", priceYuan: "Price (yuan)", create: "Create",
    toShip: "To ship", refunded: "Refunded", day: "Day", ordersCount: "Orders", backToCatalog: "Back to the catalog", created: "Created", shipped: "Shipped",
  },
  zh: {
    shop: "商城", console: "管理后台", language: "English", signIn: "登录", signUp: "注册", signOut: "退出",
    welcomeTitle: "欢迎光临",
    welcomeText: "茶叶、月饼和家居好物,每笔付款订单都有返现。登录或注册后即可浏览商品并下单。",
    email: "邮箱", password: "密码", passwordHint: "至少 12 位，含大小写字母和数字。",
    code: "验证码", confirm: "确认", codeSent: "验证码已发送至 {email}，请输入以确认邮箱。",
    resend: "重新发送验证码", confirmed: "邮箱已确认，请登录。", haveAccount: "已有账号？登录",
    noAccount: "新用户？注册", catalog: "商品", all: "全部", loadMore: "加载更多", loading: "加载中…",
    inStock: "有货", soldOut: "已售罄", lowStock: "库存紧张", quantity: "数量", order: "下单",
    signInToOrder: "登录后下单", orders: "订单", inbox: "消息", rebates: "返利", noOrders: "暂无订单。",
    noMessages: "暂无消息。", orderTitle: "订单 {id}", status: "状态", total: "合计", payWith: "支付方式",
    ALIPAY: "支付宝", WECHAT_PAY: "微信支付", CARD: "银行卡", pay: "支付", openPayPage: "打开支付页面",
    scanQr: "请用微信扫码：{code}", waiting: "等待支付结果…", cancel: "取消订单", confirmReceipt: "确认收货",
    shipment: "已由 {carrier} 发货，运单号 {tracking}", refundRequest: "申请退款", reason: "原因",
    returnGoods: "我会退回商品", send: "提交", refundRequests: "退款申请", balance: "余额",
    pending: "待结算", available: "可提现", withdraw: "提现", amountYuan: "金额（元）", channel: "提现到",
    account: "账号（支付宝登录号或微信 openid）", accountName: "真实姓名（支付宝）", withdrawals: "提现记录",
    entries: "明细", retryIn: "请求过于频繁，请 {seconds} 秒后重试。", notAdmin: "该账号不在管理员组。",
    products: "商品", stock: "库存", stockShards: "库存分片（秒杀）", reserved: "已预留", setStock: "设置库存", saved: "已保存。", ship: "发货",
    carrier: "承运商", trackingNumber: "运单号",
    approve: "批准", reject: "拒绝", sales: "销售", from: "从", to: "到", show: "查看", revenue: "销售额",
    units: "件数", topProducts: "热销商品", rules: "返利规则", save: "保存", nothing: "暂无内容。", noRulesYet: "尚未设置返利规则：保存之前，任何订单都不产生返利。",
    badAmount: "请输入以元为单位、最多两位小数的金额。", newProduct: "新商品", productId: "商品编号",
    name: "名称", description: "描述", category: "类目", priceYuan: "价格（元）", create: "创建",
    toShip: "待发货", refunded: "已退款", day: "日期", ordersCount: "订单数", backToCatalog: "返回商品列表", created: "下单时间", shipped: "已发货",
  },
};

const STATUS = {
  en: {
    PENDING_PAYMENT: "Awaiting payment", PAID: "Paid", PAYMENT_FAILED: "Payment failed", CANCELLED: "Cancelled",
    EXPIRED: "Expired", REFUNDED: "Refunded", SHIPPED: "Shipped", COMPLETED: "Completed", PARTIALLY_REFUNDED: "Partly refunded",
    REQUESTED: "Requested", APPROVED: "Approved", REJECTED: "Rejected", PENDING_REVIEW: "In review", PROCESSING: "Being paid",
    FAILED: "Failed", PENDING: "Pending", AVAILABLE: "Available", REVERSED: "Reversed", CREDIT: "Rebate", CLAWBACK: "Clawback",
    WITHDRAWAL: "Withdrawal",
  },
  zh: {
    PENDING_PAYMENT: "待支付", PAID: "已支付", PAYMENT_FAILED: "支付失败", CANCELLED: "已取消", EXPIRED: "已过期",
    REFUNDED: "已退款", SHIPPED: "已发货", COMPLETED: "已完成", PARTIALLY_REFUNDED: "部分退款", REQUESTED: "已申请",
    APPROVED: "已批准", REJECTED: "已拒绝", PENDING_REVIEW: "审核中", PROCESSING: "打款中", FAILED: "失败",
    PENDING: "待结算", AVAILABLE: "可提现", REVERSED: "已冲回", CREDIT: "返利", CLAWBACK: "扣回", WITHDRAWAL: "提现",
  },
};

let language = localStorage.getItem("language") ?? (navigator.language?.startsWith("zh") ? "zh" : "en");

export function lang() { return language; }
export function locale() { return language === "zh" ? "zh-CN" : "en-GB"; }

export function toggleLanguage() {
  language = language === "zh" ? "en" : "zh";
  localStorage.setItem("language", language);
  document.documentElement.lang = locale();
}

/** t("codeSent", {email}) in the chosen language. */
export function t(key, vars = {}) {
  const text = STRINGS[language][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** A status or kind from the API in words; unknown ones as they are. */
export function status(value) {
  return STATUS[language][value] ?? value;
}
